"""End to end: `tenet serve --schedule epc-aware|naive` (Vessels' EPC-aware scheduling) on the sim
platform (INSECURE), with real RA-TLS clients on loopback.

epc-aware: the admitted enclaves' EPC commits never pass the bound, queued connections are served
in FIFO order with no errors, and the queue metrics move. naive: one enclave per concurrent client.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import numpy as np
import pytest

from sched_util import SchedDeployment, drive, metric

MODEL = "mobilenet_v3_small"
MiB = 2**20


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    d = SchedDeployment(tmp_path_factory.mktemp("sched"), MODEL, threads=1)
    try:
        d.prepare().start_keybroker()
        # Probe: one enclave alone reports its EPC commit (the scheduler's estimate for the others).
        d.start_scheduled("epc-aware", "512MiB", 1)
        d.commit = d.serving["schedule"]["commit_bytes"]
        assert d.commit > MiB, d.serving
        d.stop_server()
        yield d
    finally:
        d.stop()


def hold_connection(d) -> ssl.SSLSocket:
    """An attested TLS connection to an enclave, kept open (it occupies that enclave's stream)."""
    ctx = ssl.create_default_context(cafile=str(d.dir / "server.pem"))
    host, port = d.http.split(":")
    raw = socket.create_connection((host, int(port)), timeout=60)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"200" in s.recv(4096).split(b"\r\n")[0]
    return s


def test_epc_aware_admits_within_the_bound_and_serves_the_queue_in_fifo_order(dep):
    budget = 4 * dep.commit
    bound = int(2.5 * dep.commit)  # room for two enclaves' commits, not three
    dep.start_scheduled("epc-aware", f"{budget // 4096 * 4096}B", 4, bound=f"{bound}B")
    try:
        sched = dep.serving["schedule"]
        assert sched["policy"] == "epc-aware" and sched["pool"] == 2 and dep.serving["enclaves"] == 2, sched
        assert sched["admitted_commit_bytes"] <= bound
        dep.attest()
        x = np.load(dep.reference.input)

        # FIFO: both enclaves busy (held connections); four clients queue in arrival order; then one
        # enclave frees up, so they are served strictly one after another, in that order.
        holders = [hold_connection(dep), hold_connection(dep)]
        order, errors, lock = [], [], threading.Lock()

        def client(i):
            from tenet_client import TenetClient
            try:
                TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=120).infer(MODEL, {"input": x})
                with lock:
                    order.append(i)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))

        threads = []
        for i in range(4):
            threads.append(threading.Thread(target=client, args=(i,)))
            threads[-1].start()
            time.sleep(0.4)
        depth = metric(dep.scrape(), "tenet_sched_queue_depth", policy="epc-aware")
        assert depth == [4.0], depth
        assert order == []  # nobody served while both enclaves are held
        holders[0].close()
        for t in threads:
            t.join(timeout=120)
        holders[1].close()
        assert errors == []
        assert order == [0, 1, 2, 3]

        # Load: 6 clients, 2 enclaves; peak queue depth seen while it runs, no errors.
        depths = []
        res = drive(dep, MODEL, x, 6, requests_per_client=6, tick_s=0.05,
                    on_tick=lambda: depths.extend(metric(dep.scrape(), "tenet_sched_queue_depth")))
        assert res.errors == []
        assert len(res.latencies_ms) == 36
        assert max(depths, default=0) >= 1

        time.sleep(1.5)  # the enclaves' next stats tick
        m = dep.scrape()
        assert metric(m, "tenet_sched_queue_depth", policy="epc-aware") == [0.0]
        assert metric(m, "tenet_sched_queue_wait_seconds_count", policy="epc-aware")[0] >= 40
        assert metric(m, "tenet_sched_queue_wait_seconds_sum", policy="epc-aware")[0] > 0.5
        assert metric(m, "tenet_sched_streams_total", policy="epc-aware", outcome="granted")[0] >= 40
        admitted = metric(m, "tenet_sched_admitted_commit_bytes", policy="epc-aware")[0]
        assert 0 < admitted <= bound
        assert metric(m, "tenet_sched_bound_bytes", policy="epc-aware") == [bound]
        assert metric(m, "tenet_sched_admitted_enclaves", policy="epc-aware") == [2.0]
        # Exactly the pool ran (no third enclave), each within its limit, and none paged.
        commits = metric(m, "tenet_enclave_commit_bytes")
        assert len(commits) == 2 and sum(commits) <= bound, commits
        assert sum(metric(m, "tenet_enclave_up")) == 2
        assert metric(m, "tenet_host_epc", counter="peak_resident_bytes")[0] <= bound
        assert metric(m, "tenet_host_epc", counter="evictions") == [0.0]
    finally:
        dep.stop_server()


def test_naive_starts_one_enclave_per_concurrent_client(dep):
    dep.start_scheduled("naive", "512MiB", 3)
    try:
        sched = dep.serving["schedule"]
        assert sched["policy"] == "naive" and sched["max_enclaves"] == 3, sched
        assert dep.serving["enclaves"] == 1  # the others start on demand
        dep.attest()
        assert sum(metric(dep.scrape(), "tenet_enclave_up")) == 1  # one to start with
        x = np.load(dep.reference.input)
        # Three clients hold a connection each: three enclaves, no queueing beyond their start-up.
        holders = [hold_connection(dep) for _ in range(3)]
        res = drive(dep, MODEL, x, 1, requests_per_client=1)  # a fourth: shares (no bound, no new slot)
        assert res.errors == []
        m = dep.scrape()
        assert sum(metric(m, "tenet_enclave_up")) == 3
        assert metric(m, "tenet_sched_admitted_enclaves", policy="naive") == [3.0]
        for h in holders:
            h.close()
        res = drive(dep, MODEL, x, 3, requests_per_client=3)
        assert res.errors == [] and len(res.latencies_ms) == 9
    finally:
        dep.stop_server()


def test_schedule_flags_are_checked(dep):
    bad = dep.run("serve", "--manifest", str(dep.manifest), "--package", f"{MODEL}={dep.package}",
                  "--keybroker", dep.keybroker_url, "--identity-store", str(dep.dir / "identity.sealed"),
                  "--schedule", "epc-aware", check=False)
    assert bad.returncode != 0 and "--schedule needs --epc" in bad.stderr
    bad = dep.run("serve", "--manifest", str(dep.manifest), "--package", f"{MODEL}={dep.package}",
                  "--keybroker", dep.keybroker_url, "--identity-store", str(dep.dir / "identity.sealed"),
                  "--schedule", "naive", "--epc", "93MiB", "--enclaves", "2", check=False)
    assert bad.returncode != 0 and "--max-enclaves" in bad.stderr
