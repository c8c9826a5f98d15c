"""`tenet run --enclave sim`: the engine inside one sim enclave whose memory is paged against an
emulated EPC budget (INSECURE: no hardware). Outputs must be bitwise identical to the plain engine
in planned and naive memory modes, whatever the paging; the counters must show the paging."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "models"))
import export_models  # noqa: E402
from deployment import tenet_bin  # noqa: E402

MODEL = "mobilenet_v3_small"


def run(ref, out: Path, *extra: str) -> dict:
    res = subprocess.run([tenet_bin(), "run", str(ref.model), "--input", f"input={ref.input}", "--output-dir", str(out),
                          "--quiet", "--threads", "2", *extra], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ref():
    return export_models.ensure_reference(MODEL, 1)


@pytest.fixture(scope="module")
def plain(ref, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    run(ref, out)
    return np.load(out / "output.npy")


@pytest.mark.parametrize("memory", ["planned", "naive"])
@pytest.mark.parametrize("epc", ["64MiB", "6MiB"])
def test_sim_enclave_outputs_are_bitwise_the_engines(ref, plain, tmp_path, memory, epc):
    stats = run(ref, tmp_path, "--enclave", "sim", "--epc", epc, "--memory", memory, "--bench", "2", "--warmup", "0")
    got = np.load(tmp_path / "output.npy")
    assert np.array_equal(got, plain)
    assert stats["enclave"] == "sim (INSECURE)" and stats["memory"] == memory
    assert stats["peak_resident_bytes"] <= stats["epc_budget_bytes"]
    if memory == "planned":
        # Vessels' planned mode: the plan fits the budget, so the runs never page, whatever the budget.
        assert stats["evictions"] == 0 and stats["loads"] == 0
        assert stats["peak_epc_bytes"] <= stats["epc_budget_bytes"]
        assert stats["streaming"]["planned_peak_bytes"] <= stats["streaming"]["budget_bytes"]
        # Bounded loading: the weights are deferred into sealed memory as they are imported and
        # materialized one kernel at a time, so loading does not page either.
        assert stats["load"]["evictions"] == 0
        assert stats["load"]["peak_epc_bytes"] <= stats["epc_budget_bytes"]
        if epc == "6MiB":  # 10 MB of weights in a 6 MiB enclave: most of them stream
            assert stats["streaming"]["streamed_weight_bytes"] > 0
            assert stats["streaming"]["tiled_layers"] > 0
    elif epc == "6MiB":  # the model (10 MB of weights, twice) does not fit: it pages on every run
        assert stats["evictions"] > 0 and stats["loads"] > 0 and stats["page_faults"] > 0
        assert stats["peak_epc_bytes"] > stats["epc_budget_bytes"]
    else:
        assert stats["evictions"] == 0


def test_a_model_larger_than_the_epc_runs_without_paging_when_planned(tmp_path):
    """resnet50 (98 MiB of weights) in a 93 MiB enclave: streamed from sealed memory, zero
    evictions, bitwise the plain engine's output; naive mode commits far more and pages."""
    big = export_models.ensure_reference("resnet50", 1)
    run(big, tmp_path / "plain")
    want = np.load(tmp_path / "plain" / "output.npy")
    planned = run(big, tmp_path / "p", "--enclave", "sim", "--epc", "93MiB", "--memory", "planned", "--bench", "2",
                  "--warmup", "0")
    assert np.array_equal(np.load(tmp_path / "p" / "output.npy"), want)
    assert planned["evictions"] == 0 and planned["loads"] == 0
    assert planned["peak_epc_bytes"] <= planned["epc_budget_bytes"]
    # Loading too: the 98 MiB of weights never are in the enclave at once.
    assert planned["load"]["evictions"] == 0
    assert planned["load"]["peak_epc_bytes"] <= planned["epc_budget_bytes"]
    assert planned["streaming"]["streamed_weight_bytes"] > 0
    assert planned["streaming"]["store"].startswith("AES-128-GCM")
    res = subprocess.run([tenet_bin(), "inspect", str(big.model), "--epc", "93MiB"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "streamed (ring)" in res.stdout and "resident" in res.stdout
    assert "expected paging        none" in res.stdout
    below = float(res.stdout.split("planned peak is ")[1].split("%")[0])
    assert below > 50.0, res.stdout[-800:]


def test_naive_mode_needs_more_activation_memory(ref, tmp_path):
    planned = run(ref, tmp_path / "p", "--enclave", "sim", "--epc", "64MiB", "--memory", "planned")
    naive = run(ref, tmp_path / "n", "--enclave", "sim", "--epc", "64MiB", "--memory", "naive")
    assert naive["peak_activation_bytes"] > 2 * planned["peak_activation_bytes"]
    assert naive["allocated_bytes"] > planned["allocated_bytes"]


def test_bad_epc_size_is_a_clean_error(ref, tmp_path):
    res = subprocess.run([tenet_bin(), "run", str(ref.model), "--input", f"input={ref.input}", "--output-dir",
                          str(tmp_path), "--enclave", "sim", "--epc", "lots"], capture_output=True, text=True)
    assert res.returncode != 0 and "epc" in res.stderr.lower()
