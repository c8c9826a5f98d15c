#!/usr/bin/env python3
"""Latency of tenet against ONNX Runtime (CPU) and PyTorch, same models, same inputs, same threads.

    .venv/bin/python bench/bench_engine.py                         # 9 default models, batch 1 and 8
    .venv/bin/python bench/bench_engine.py --models resnet50 bert_encoder --batch 1 --runs 50
    .venv/bin/python bench/bench_engine.py --json out/bench.json   # also save the results

Models come from tests/models/export_models.py (random weights, cached ONNX exports in .cache/models;
the first run exports them). For each (model, batch) the engines run in --rounds rounds, each round
running every engine for its share of --runs, in an order that rotates from round to round, so that
drift (thermal, noisy neighbours) spreads over all engines instead of favouring one.

  tenet  `tenet run MODEL --input input=X.npy --output-dir TMP --threads T --bench K`: the last
         line of stdout is a JSON object with latency_ms_p50, latency_ms_p90, peak_activation_bytes.
         One process per round (tenet warms up itself); its p50/p90 are the medians of the rounds'.
  ORT    onnxruntime InferenceSession, CPUExecutionProvider, intra_op_num_threads=T,
         inter_op_num_threads=1, ORT_ENABLE_ALL, ORT_SEQUENTIAL; --warmup runs, then timed runs.
  torch  the same torch.nn.Module in eval mode, torch.set_num_threads(T), torch.inference_mode().

Latencies are per-inference wall times in milliseconds; p50 is the median over all timed runs.
A failure of one engine on one model is reported in its row and the benchmark goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "models"))
import export_models  # noqa: E402

ENGINES = ("tenet", "ort", "torch")


@dataclass
class EngineResult:
    p50_ms: float | None = None
    p90_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    peak_activation_bytes: int | None = None
    error: str | None = None

    def finish(self) -> None:
        if self.samples_ms and self.p50_ms is None:
            self.p50_ms = statistics.median(self.samples_ms)
            self.p90_ms = float(np.percentile(self.samples_ms, 90))


@dataclass
class Row:
    model: str
    batch: int
    tenet: EngineResult = field(default_factory=EngineResult)
    ort: EngineResult = field(default_factory=EngineResult)
    torch: EngineResult = field(default_factory=EngineResult)
    tenet_round_p50_ms: list[float] = field(default_factory=list)
    tenet_round_p90_ms: list[float] = field(default_factory=list)

    def ratio(self, peer: str) -> float | None:
        other = getattr(self, peer).p50_ms
        if self.tenet.p50_ms is None or not other:
            return None
        return self.tenet.p50_ms / other


def one_line(text: str, limit: int = 160) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "(no output)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tenet_binary(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    env = os.environ.get("TENET_BIN")
    return Path(env).resolve() if env else REPO_ROOT / "build" / "tenet"


class TenetRunner:
    def __init__(self, binary: Path, model: Path, input_path: Path, threads: int, work: Path):
        self.binary, self.model, self.input_path, self.threads, self.work = binary, model, input_path, threads, work

    def run(self, runs: int, row: Row) -> None:
        if row.tenet.error:
            return
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            row.tenet.error = f"tenet binary not found at {self.binary} (set TENET_BIN or --tenet)"
            return
        out_dir = Path(tempfile.mkdtemp(dir=self.work, prefix="tenet_out_"))
        cmd = [str(self.binary), "run", str(self.model), "--input", f"input={self.input_path}",
               "--output-dir", str(out_dir), "--threads", str(self.threads), "--bench", str(runs)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            row.tenet.error = "tenet timed out after 1800 s"
            return
        if proc.returncode != 0:
            row.tenet.error = f"exit {proc.returncode}: {one_line(proc.stderr or proc.stdout)}"
            return
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        try:
            report = json.loads(lines[-1])
            row.tenet_round_p50_ms.append(float(report["latency_ms_p50"]))
            row.tenet_round_p90_ms.append(float(report["latency_ms_p90"]))
            row.tenet.peak_activation_bytes = int(report["peak_activation_bytes"])
        except (IndexError, ValueError, KeyError, TypeError) as e:
            row.tenet.error = f"bad --bench report ({type(e).__name__}): {one_line(proc.stdout)}"

    def finish(self, row: Row) -> None:
        if row.tenet.error is None and row.tenet_round_p50_ms:
            row.tenet.p50_ms = statistics.median(row.tenet_round_p50_ms)
            row.tenet.p90_ms = statistics.median(row.tenet_round_p90_ms)


class OrtRunner:
    def __init__(self, model: Path, x: np.ndarray, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.feeds = {"input": x}

    def infer(self) -> None:
        self.session.run(None, self.feeds)


class TorchRunner:
    def __init__(self, name: str, x: np.ndarray, threads: int):
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        self.model = export_models.build_model(name)
        self.x = torch.from_numpy(x)

    def infer(self) -> None:
        with self.torch.inference_mode():
            self.model(self.x)


def time_runs(runner, runs: int, result: EngineResult) -> None:
    if result.error:
        return
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            runner.infer()
            result.samples_ms.append((time.perf_counter() - t0) * 1e3)
    except Exception as e:  # noqa: BLE001 (report and go on)
        result.error = f"{type(e).__name__}: {one_line(str(e))}"


def make_runner(factory, result: EngineResult):
    try:
        return factory()
    except Exception as e:  # noqa: BLE001
        result.error = f"{type(e).__name__}: {one_line(str(e))}"
        return None


def bench_one(name: str, batch: int, args, work: Path) -> Row:
    row = Row(name, batch)
    try:
        model_path = export_models.ensure_model(name, verbose=True)
        x = export_models.make_input(name, batch)
    except Exception as e:  # noqa: BLE001
        msg = f"export failed: {type(e).__name__}: {one_line(str(e))}"
        for engine in ENGINES:
            getattr(row, engine).error = msg
        return row
    input_path = work / f"{name}_b{batch}_input.npy"
    np.save(input_path, x)

    tenet = TenetRunner(tenet_binary(args.tenet), model_path, input_path, args.threads, work)
    ort_runner = make_runner(lambda: OrtRunner(model_path, x, args.threads), row.ort)
    torch_runner = make_runner(lambda: TorchRunner(name, x, args.threads), row.torch)
    peers = {"ort": ort_runner, "torch": torch_runner}

    for engine, runner in peers.items():  # warm-up once; each round adds one more below
        if runner is not None:
            scratch = EngineResult()
            time_runs(runner, args.warmup, scratch)
            getattr(row, engine).error = scratch.error

    rounds = max(1, min(args.rounds, args.runs))
    for r in range(rounds):
        share = args.runs // rounds + (1 if r < args.runs % rounds else 0)
        order = ENGINES[r % len(ENGINES):] + ENGINES[: r % len(ENGINES)]
        for engine in order:
            if engine == "tenet":
                tenet.run(share, row)
            elif peers[engine] is not None:
                time_runs(peers[engine], 1, EngineResult())  # re-warm caches after the other engines
                time_runs(peers[engine], share, getattr(row, engine))
    tenet.finish(row)
    row.ort.finish()
    row.torch.finish()
    return row


def fmt_ms(result: EngineResult) -> str:
    if result.error:
        return "error"
    return f"{result.p50_ms:.2f}" if result.p50_ms is not None else "-"


def fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


COLUMNS = ("model", "batch", "tenet p50 ms", "ORT p50 ms", "torch p50 ms", "tenet/ORT", "tenet/torch",
           "tenet peak act MiB")
WIDTHS = (18, 5, 12, 10, 12, 9, 11, 18)


def format_row(cells) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, WIDTHS)))


def print_row(row: Row) -> None:
    peak = row.tenet.peak_activation_bytes
    cells = (row.model, row.batch, fmt_ms(row.tenet), fmt_ms(row.ort), fmt_ms(row.torch),
             fmt_ratio(row.ratio("ort")), fmt_ratio(row.ratio("torch")),
             f"{peak / 2**20:.1f}" if peak is not None and not row.tenet.error else "-")
    print(format_row(cells), flush=True)
    for engine in ENGINES:
        error = getattr(row, engine).error
        if error:
            print(f"    {engine} error: {error}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", nargs="+", default=list(export_models.DEFAULT_MODELS))
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per engine (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per peer engine (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the runs are split into (default 3)")
    parser.add_argument("--tenet", help="tenet binary (default: $TENET_BIN, else build/tenet)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.threads < 1 or args.warmup < 0 or any(b < 1 for b in args.batch):
        parser.error("--runs, --threads and --batch must be >= 1, --warmup >= 0")

    import onnxruntime
    import torch

    print(f"tenet {tenet_binary(args.tenet)} | onnxruntime {onnxruntime.__version__} | torch {torch.__version__} | "
          f"threads {args.threads} | runs {args.runs} in {args.rounds} rounds | warmup {args.warmup} | "
          f"{platform.machine()} {os.cpu_count()} cpus", flush=True)
    load_1min = os.getloadavg()[0]
    if load_1min > 0.5:
        print(f"warning: 1-minute load average is {load_1min:.1f} before starting: other processes compete for "
              f"the cores and skew the timings (PyTorch's OpenMP threads suffer most)", flush=True)
    print(format_row(COLUMNS), flush=True)
    rows: list[Row] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tenet_bench_") as tmp:
        for name in args.models:
            for batch in args.batch:
                try:
                    row = bench_one(name, batch, args, Path(tmp))
                except Exception as e:  # noqa: BLE001 (keep going, say what broke)
                    traceback.print_exc()
                    row = Row(name, batch)
                    row.tenet.error = row.ort.error = row.torch.error = f"{type(e).__name__}: {one_line(str(e))}"
                rows.append(row)
                print_row(row)
    print(f"done in {time.time() - started:.0f} s", flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = []
        for row in rows:
            d = asdict(row)
            d["tenet_over_ort"] = row.ratio("ort")
            d["tenet_over_torch"] = row.ratio("torch")
            results.append(d)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        config.update(tenet_binary=str(tenet_binary(args.tenet)), onnxruntime=onnxruntime.__version__,
                      torch=torch.__version__, cpu_count=os.cpu_count(), machine=platform.machine())
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
