"""A real `scrm serve` under overload, path scans, half-sent bodies and a snapshot it cannot serve.

One server (token set, ``SCRM_MAX_IN_FLIGHT=2``) on its own copy of the session store. Figures (time to the
503s, shutdown time) are printed for the report, never asserted: the bounds below are an order of magnitude
under the failure each test guards against (a 10 s client timeout, a 600 s shutdown, a server that never exits).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_http import TOKEN, Server

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_IN_FLIGHT = 2


@pytest.fixture(scope="module")
def server(trained_setup, tmp_path_factory):
    setup = trained_setup.copy_store(tmp_path_factory.mktemp("hardening-store"))
    srv = Server(setup, tmp_path_factory.mktemp("hardening-logs") / "serve.log",
                 env={"SCRM_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT), "SCRM_RETRY_AFTER": "2"}).start()
    yield srv
    srv.stop()


def test_overload_gets_quick_503s_not_timeouts_and_recovers(server, people):
    """12 concurrent slow calls (every eligible person, with reasons) into a worker admitting 2."""
    ids = people.loc[people["eligible"], "person_id"].tolist()

    def call(_: int) -> tuple[int, float, str | None]:
        started = time.perf_counter()
        r = httpx.post(f"{server.url}/score", json={"customer_ids": ids, "with_reasons": True}, headers=AUTH,
                       timeout=120)
        return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
    refused = [(s, t, ra) for s, t, ra in results if s == 503]
    served = [(s, t, ra) for s, t, ra in results if s == 200]
    print(f"\noverload: {len(served)} served (slowest {max(t for _, t, _ in served):.2f} s), {len(refused)} "
          f"got 503 (slowest {max(t for _, t, _ in refused):.3f} s, median "
          f"{float(np.median([t for _, t, _ in refused])):.3f} s)")
    assert {s for s, _, _ in results} <= {200, 503}
    assert len(served) >= 1 and len(refused) >= 12 - 2 * MAX_IN_FLIGHT
    assert all(ra == "2" for _, _, ra in refused)
    assert max(t for _, t, _ in refused) < 10  # answered, not left to a client timeout
    after = httpx.post(f"{server.url}/score", json={"customer_ids": ids[:5], "with_reasons": False}, headers=AUTH,
                       timeout=30)
    assert after.status_code == 200  # nothing queued behind the burst


def _series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_random_paths_do_not_grow_metrics(server):
    rng = np.random.default_rng(3)
    metrics = lambda: httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=30)  # noqa: E731
    httpx.get(f"{server.url}/warm-up-unknown", timeout=10)  # the catch-all label's 401 and 404 series
    httpx.get(f"{server.url}/warm-up-unknown", headers=AUTH, timeout=10)
    before = _series(metrics().text)
    with httpx.Client(timeout=10) as c:
        for i in range(500):
            path = f"/scan/{rng.integers(1 << 40):x}/{i}"
            c.get(f"{server.url}{path}", headers=AUTH if i % 2 else {})
    scrape = metrics()
    assert scrape.status_code == 200, scrape.text[:500]
    text = scrape.text
    after = _series(text)
    endpoints = set(re.findall(r'endpoint="([^"]*)"', text))
    print(f"\nmetrics: {len(before)} series before and {len(after)} after 500 random paths, {len(text):,} bytes")
    assert after == before
    assert not any(e.startswith("/scan/") for e in endpoints) and "/{unknown}" in endpoints
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401


def test_repeated_content_type_is_400(server):
    r = httpx.post(f"{server.url}/score", content=b'{"customer_ids": ["x"]}', timeout=30,
                   headers=[("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "text/plain"),
                            ("Content-Type", "application/json")])
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["header", "Content-Type"]


def test_bad_request_logs_one_line_without_the_body(server):
    marker = "p_marker_" + "7" * 12
    r = httpx.post(f"{server.url}/score", json={"customer_ids": marker}, headers=AUTH, timeout=30)  # not a list
    assert r.status_code == 400
    time.sleep(1)  # the log line is flushed by another process
    log = server.log_path.read_text(errors="replace")
    assert marker not in log
    assert re.search(r"400 on /score \[POST\]: customer_ids", log)


def test_shutdown_is_quick_with_a_half_sent_body(trained_setup, tmp_path):
    """A client announces 1,000 bytes, sends 10 and leaves; SIGTERM then stops the server within seconds."""
    srv = Server(trained_setup.copy_store(tmp_path / "store"), tmp_path / "serve.log").start()
    try:
        host, port = "127.0.0.1", srv.port
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"custom")
            time.sleep(0.5)
        time.sleep(0.5)
        started = time.perf_counter()
        os.killpg(srv.proc.pid, signal.SIGTERM)
        srv.proc.wait(timeout=120)
        took = time.perf_counter() - started
        print(f"\nshutdown with a half-sent body: {took:.1f} s")
        assert took < 60  # the request timeout is 600 s
    finally:
        srv.stop()


def test_a_worker_that_cannot_start_stops_the_server(trained_setup, tmp_path):
    """`bentoml serve` itself (no `scrm serve` pre-check) on a truncated snapshot exits instead of looping."""
    import shutil

    snap = next((trained_setup.data_dir / "features").glob("as_of=*"))
    dest = tmp_path / "data" / "features" / snap.name
    shutil.copytree(snap, dest)
    features = dest / "features.parquet"
    features.write_bytes(features.read_bytes()[:100])
    env = {**os.environ, **trained_setup.env(), "SCRM_DATA_DIR": str(tmp_path / "data"),
           "BENTOML_DO_NOT_TRACK": "true"}
    workdir = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:ScrmService",
                                 "--port", str(port), "--working-dir", str(workdir)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            pytest.fail(f"bentoml serve kept running: {log_path.read_text(errors='replace')[-2000:]}")
    text = log_path.read_text(errors="replace")
    assert "not readable Parquet" in text and "scrm features build" in text
    assert text.count("scrm service cannot start") == 1
