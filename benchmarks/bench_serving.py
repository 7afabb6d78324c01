"""Benchmark the HTTP service: starts `scrm serve` on loopback and measures what marketing systems feel.

1. start-up: seconds from `scrm serve` to ``/readyz`` 200 (loading the champions and scoring the whole snapshot);
2. ``POST /score`` with 100 ids per request at a steady (open-loop) 50 requests/s for 60 s after a 5 s warm-up:
   p50 / p90 / p99 / max latency, throughput and errors (target: p99 < 50 ms, 0 errors on 2 cores). Requests
   leave on a fixed schedule whatever the server does, so a slow server shows up as latency, not as a lower
   rate; latency is measured from the scheduled send time (client-side queueing included). The headline run is
   the default call (``with_reasons: true``: the churn reasons come from the start-up batch pass by lookup); a
   second run asks ``with_reasons: false`` (``--skip-plain`` skips it);
2b. with ``--overload``: admission control. The capacity (``/score`` with reasons, ``--capacity-clients``
   back-to-back clients for 10 s), then a 30 s open-loop burst at ``--burst-factor`` (4) × that capacity with a
   10 s client timeout (target: the excess answered 503 with ``Retry-After`` quickly, no timeouts), then at once
   60 s at 50 requests/s (target: p99 < 50 ms, 0 errors);
3. ``POST /lookalike`` with 10,000 seeds (the biggest spenders, ``spend_365d`` excluded from the features) over
   the whole snapshot, audience = 10% of people (target: under 30 s at 1M people);
4. ``POST /target`` over everyone: a retain campaign whose budget reaches 10% of people, 10% control, JSON and
   CSV (target: under 10 s at 1M people).

Every figure is printed with its target and the ratio figure / target. The load generator runs in this process
on the same machine; its CPU use is printed too (it competes with the server for the 2 cores).

Usage::

    # an existing served setup (MLFLOW_TRACKING_URI must point at the store holding the champions)
    python benchmarks/bench_serving.py --data data/demo
    # build one: N customers to serve; champions trained on a separate small simulation (--train-customers)
    python benchmarks/bench_serving.py --data /tmp/bench1m --prepare 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AS_OF = "2026-01-01"
SCORE_P99_TARGET_MS = 50.0
LOOKALIKE_TARGET_S = 30.0
TARGET_TARGET_S = 10.0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def scrm(*args: str, env: dict) -> None:
    """Run a `scrm` command, echoing it; stop on failure."""
    cmd = [str(Path(sys.executable).with_name("scrm")), *args]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)


def prepare(data: Path, n: int, train_customers: int, env: dict, *, train_as_of: str = AS_OF) -> None:
    """Simulate ``n`` customers and their snapshot; train champions on a small separate simulation if needed
    (as of ``train_as_of``: a champion never scores a day before the one it was trained as of)."""
    if not (data / "features" / f"as_of={AS_OF}" / "manifest.json").exists():
        scrm("simulate", "--customers", str(n), "--seed", "7", "--out", str(data), env=env)
        scrm("features", "build", "--data", str(data), "--as-of", AS_OF, env=env)
    # the champions are registered under the served directory's brand (models are per brand)
    code = ("from training import registry; from features.brand import load_brand; import sys; "
            f"b = load_brand({str(data)!r}).brand; print(b); "
            "sys.exit(0 if all(registry.champion_version(registry.model_name(b, k)) for k in ('churn', 'clv')) "
            "else 1)")
    check = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if check.returncode != 0:
        brand = check.stdout.strip().splitlines()[-1]
        train = data.parent / f"{data.name}-train"
        scrm("simulate", "--customers", str(train_customers), "--seed", "8", "--out", str(train), env=env)
        scrm("train", "all", "--data", str(train), "--as-of", train_as_of, "--cutoffs", "1", "--brand", brand,
             env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path, port: int, env: dict, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("scrm")), "serve", "--data", str(data), "--port", str(port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> float:
        import httpx

        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"scrm serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 503:
                    raise SystemExit(f"the service failed to load; see {self.log.name}")
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"not ready after {timeout:.0f} s; see {self.log.name}")

    def _tree(self) -> tuple[list[int], dict[int, int]]:
        """The server and every process below it (BentoML puts its workers in their own process groups), and
        the CPU clock ticks each process on the machine has used."""
        table: dict[int, tuple[int, int]] = {}
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                try:
                    fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
                    table[int(pid_dir.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
                except (OSError, IndexError, ValueError):
                    continue
        tree, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, (ppid, _) in table.items() if ppid == parent and pid not in tree]
            tree.extend(children)
            frontier.extend(children)
        return tree, {pid: ticks for pid, (_, ticks) in table.items()}

    def server_cpu_seconds(self) -> float:
        """CPU seconds used so far by the server and its workers."""
        tree, ticks = self._tree()
        return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            tree, _ = self._tree()
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            for pid in tree:  # whatever did not stop gracefully
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client for the load runs: ``POST`` a JSON body, read the status, headers and
    body (Content-Length or chunked). httpx costs about as much CPU per request as the server spends answering,
    which on 2 shared cores starves the server and, in a burst, made the client itself the bottleneck.

    At most ``max_connections`` requests are outstanding (one connection each); idle connections are reused, a
    reused one the server has closed in the meantime is replaced once.
    """

    def __init__(self, url: str, headers: dict, max_connections: int) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = (f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n{extra}").encode()
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: list[tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], float]] = []

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)``; ``TimeoutError`` after ``timeout`` s, ``OSError``/``EOFError`` on a broken
        connection."""
        async with self.slots:
            for attempt in (0, 1):
                conn = None
                while self.idle and conn is None:  # idle for 2 s or more: the server may be closing it (5 s)
                    conn, used = self.idle.pop()
                    if time.perf_counter() - used > 2.0:
                        conn[1].close()
                        conn = None
                reused = conn is not None
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                try:
                    status, headers, content = await asyncio.wait_for(self._roundtrip(conn, path, body), timeout)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    conn[1].close()
                    if reused and attempt == 0 and not getattr(exc, "partial", b""):
                        self.close()  # the server closed an idle connection: once more on a new one
                        continue
                    raise EOFError(str(exc)) from None
                except BaseException:
                    conn[1].close()
                    raise
                if headers.get("connection", "").lower() == "close":
                    conn[1].close()
                else:
                    self.idle.append((conn, time.perf_counter()))
                return status, headers, content
        raise AssertionError("unreachable")

    async def _roundtrip(self, conn, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.head
                     + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            content = b"".join(p[:-2] for p in parts)
        else:
            content = await reader.read()
        return status, headers, content

    def close(self) -> None:
        for (_, writer), _ in self.idle:
            writer.close()
        self.idle.clear()


async def steady_load(url: str, bodies: list[bytes], rate: float, duration: float, warmup: float,
                      headers: dict, *, max_in_flight: int = 64, timeout: float = 30.0) -> dict:
    """Send ``bodies`` round-robin at ``rate``/s (open loop); latency from each request's scheduled time.

    At most ``max_in_flight`` requests are outstanding (one connection each, :class:`RawHTTP`); a request that
    finds them all busy waits for a slot, and that wait counts in its latency. A request not answered within
    ``timeout`` seconds is an error (``Timeout``).
    """
    client = RawHTTP(url, headers, max_in_flight)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    error_latencies: dict[str, list[float]] = {}
    retry_after: dict[str, int] = {}
    lags: list[float] = []
    windows: dict[int, list[float]] = {}  # 10 s window of the measured part -> latencies (errors as NaN)
    start = time.perf_counter() + 0.2
    total = int((warmup + duration) * rate)

    async def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = time.perf_counter() - scheduled
        try:
            status, hdrs, content = await client.post("/score", bodies[i % len(bodies)], timeout)
            ok = status == 200 and content.startswith(b'{"model_versions"')
            key = None if ok else f"HTTP {status}"
            if status == 503:
                ra = f"Retry-After: {hdrs.get('retry-after')}"
                retry_after[ra] = retry_after.get(ra, 0) + 1
        except TimeoutError:
            key = "Timeout"
        except (OSError, EOFError) as exc:
            key = type(exc).__name__
        done = time.perf_counter()
        if i >= warmup * rate:
            if key is None:
                latencies.append(done - scheduled)
            else:
                errors[key] = errors.get(key, 0) + 1
                error_latencies.setdefault(key, []).append(done - scheduled)
            lags.append(lag)
            windows.setdefault(int((i / rate - warmup) // 10), []).append(
                done - scheduled if key is None else float("nan"))

    measured_start = start + warmup
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - measured_start
    client.close()
    lat = np.array(latencies) * 1000
    n_measured = len(latencies) + sum(errors.values())
    return {
        "requests": n_measured,
        "ok": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p90_ms": float(np.percentile(lat, 90)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
        "max_send_lag_ms": float(max(lags) * 1000) if lags else float("nan"),
        "error_ms": {k: {"p50": float(np.percentile(v, 50) * 1000), "p99": float(np.percentile(v, 99) * 1000),
                         "max": float(max(v) * 1000)} for k, v in error_latencies.items()},
        "retry_after": retry_after,
        "by_10s": [(float(np.nanpercentile(windows[w], 99) * 1000) if not np.isnan(windows[w]).all() else float("nan"),
                    int(np.isnan(windows[w]).sum())) for w in sorted(windows)],
    }


async def closed_loop(url: str, bodies: list[bytes], clients: int, duration: float, headers: dict) -> dict:
    """``clients`` connections each sending the next request as soon as the previous one is answered."""
    client = RawHTTP(url, headers, clients)
    counts: dict[str, int] = {}
    end = time.perf_counter() + duration

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < end:
            try:
                status, _, _ = await client.post("/score", bodies[i % len(bodies)], 30.0)
                key = f"HTTP {status}"
            except TimeoutError:
                key = "Timeout"
            except (OSError, EOFError) as exc:
                key = type(exc).__name__
            counts[key] = counts.get(key, 0) + 1
            i += clients

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    client.close()
    return {"counts": counts, "ok_per_s": counts.get("HTTP 200", 0) / elapsed}


def bodies_for(people: np.ndarray, n_ids: int, n_bodies: int, *, with_reasons: bool, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [json.dumps({"customer_ids": rng.choice(people, n_ids, replace=False).tolist(),
                        "with_reasons": with_reasons}).encode() for _ in range(n_bodies)]


def print_load(label: str, res: dict, *, rate: float, target_ms: float | None) -> None:
    print(f"{label}: {res['requests']} requests at {rate:g}/s -> {res['throughput_rps']:.1f} ok/s, "
          f"errors {sum(res['errors'].values())} {res['errors'] or ''}")
    print(f"  latency ms: p50 {res['p50_ms']:.1f}  p90 {res['p90_ms']:.1f}  p99 {res['p99_ms']:.1f}  "
          f"max {res['max_ms']:.1f}  (max wait before sending {res['max_send_lag_ms']:.1f})")
    for key, q in res.get("error_ms", {}).items():
        print(f"  {key} answered in ms: p50 {q['p50']:.1f}  p99 {q['p99']:.1f}  max {q['max']:.1f}")
    if res.get("retry_after"):
        print(f"  503 headers: {res['retry_after']}")
    if target_ms is not None:
        print(f"  p99 / target {target_ms:.0f} ms = {res['p99_ms'] / target_ms:.2f}")


def timed_post(server: Server, path: str, body: dict, headers: dict) -> tuple[float, float, object]:
    """Wall seconds, server CPU seconds and the response of one call."""
    import httpx

    cpu = server.server_cpu_seconds()
    started = time.perf_counter()
    r = httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=900)
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:500]}")
    return elapsed, server.server_cpu_seconds() - cpu, r


def gc_pauses(log: Path | None, start: float, end: float) -> str:
    """The server's garbage-collector pauses between two unix times (``--gc-log``; see ``gcwatch/``)."""
    if log is None:
        return ""
    rows = []
    for path in log.parent.glob(f"{log.name}.*"):
        for line in path.read_text().splitlines():
            t, gen, ms, _ = json.loads(line)
            if start <= t <= end:
                rows.append((gen, ms))
    full = [ms for gen, ms in rows if gen == 2]
    young = [ms for gen, ms in rows if gen != 2]
    return (f"GC pauses >= 5 ms: {len(full)} full (total {sum(full):.0f} ms, max {max(full, default=0):.0f}), "
            f"{len(young)} young (max {max(young, default=0):.0f} ms)")


def score_runs(server: Server, people: np.ndarray, args, headers: dict) -> None:
    """The steady /score load as documented (with reasons), then the same without reasons."""
    runs = [("with reasons (the default call)", True, 1)]
    if not args.skip_plain:
        runs.append(("no reasons", False, 0))
    for label, with_reasons, seed in runs:
        cpu0, srv0, t0 = cpu_seconds(), server.server_cpu_seconds(), time.time()
        res = asyncio.run(steady_load(server.url, bodies_for(people, args.ids, 500, with_reasons=with_reasons,
                                                             seed=seed),
                                      args.rate, args.duration, args.warmup, headers))
        cpu1, srv1 = cpu_seconds(), server.server_cpu_seconds()
        print_load(f"/score {args.ids} ids, {label}", res, rate=args.rate, target_ms=SCORE_P99_TARGET_MS)
        span = args.duration + args.warmup
        print(f"  CPU: server {(srv1 - srv0) / span:.2f} cores ({(srv1 - srv0) / (span * args.rate) * 1000:.1f} ms "
              f"per request), load generator {(cpu1 - cpu0) / span:.2f} cores; load average "
              f"{os.getloadavg()[0]:.1f}")
        if args.gc_log:
            print(f"  {gc_pauses(args.gc_log, t0, time.time())}")


def overload_runs(server: Server, people: np.ndarray, args, headers: dict) -> None:
    """Capacity, a burst at ``burst_factor`` x capacity, then the normal rate at once (admission control)."""
    bodies = bodies_for(people, args.ids, 500, with_reasons=True, seed=2)
    cap = asyncio.run(closed_loop(server.url, bodies, args.capacity_clients, 10.0, headers))
    capacity = cap["ok_per_s"]
    print(f"capacity: /score {args.ids} ids with reasons, {args.capacity_clients} back-to-back clients for 10 s: "
          f"{capacity:.1f} ok/s {cap['counts']}")
    burst_rate = args.burst_factor * capacity
    cpu0, t0 = cpu_seconds(), time.time()
    started = time.perf_counter()
    burst = asyncio.run(steady_load(server.url, bodies, burst_rate, args.burst_seconds, 0.0, headers,
                                    max_in_flight=512, timeout=10.0))
    took = time.perf_counter() - started
    print_load(f"burst: {args.burst_factor:g} x capacity for {args.burst_seconds:g} s (client timeout 10 s)", burst,
               rate=burst_rate, target_ms=None)
    print(f"  {burst['requests']} requests in {took:.1f} s; load generator {(cpu_seconds() - cpu0) / took:.2f} cores")
    if args.gc_log:
        print(f"  {gc_pauses(args.gc_log, t0, time.time())}")
    t1 = time.time()
    after = asyncio.run(steady_load(server.url, bodies, args.rate, args.after_seconds, 0.0, headers))
    print_load(f"right after the burst: {args.rate:g}/s for {args.after_seconds:g} s", after, rate=args.rate,
               target_ms=SCORE_P99_TARGET_MS)
    print("  by 10 s window, p99 ms of the answered (errors): "
          + ", ".join(f"{p99:.0f} ({n})" for p99, n in after["by_10s"]))
    print(f"  load average {os.getloadavg()[0]:.1f}")
    if args.gc_log:
        print(f"  {gc_pauses(args.gc_log, t1, time.time())}")


def server_env(data: Path) -> dict[str, str]:
    """The environment of the benchmark's `scrm` processes: the data directory's own MLflow store (unless
    ``MLFLOW_TRACKING_URI`` is set), a PII key (also set in this process, which reads the snapshot), no tracking."""
    env = dict(os.environ)
    if "MLFLOW_TRACKING_URI" not in env:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{data}/mlruns/mlflow.db"
        env.setdefault("SCRM_ARTIFACT_ROOT", str(data / "mlruns" / "artifacts"))
    env.setdefault("SCRM_PII_KEY", "bench-pii-key")
    os.environ["SCRM_PII_KEY"] = env["SCRM_PII_KEY"]
    env["BENTOML_DO_NOT_TRACK"] = "true"
    return env


def auth_headers(env: dict[str, str]) -> dict[str, str]:
    token = env.get("SCRM_API_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="data directory to serve (its newest snapshot)")
    ap.add_argument("--prepare", type=int, default=None, metavar="N",
                    help="first simulate N customers into --data and build the snapshot (if missing), and train "
                         "champions on a separate small simulation when the store has none")
    ap.add_argument("--train-customers", type=int, default=5_000, help="customers of the training simulation")
    ap.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    ap.add_argument("--rate", type=float, default=50.0, help="/score requests per second (default 50)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up at the same rate (default 5)")
    ap.add_argument("--ids", type=int, default=100, help="ids per /score request (default 100)")
    ap.add_argument("--skip-plain", action="store_true", help="skip the /score run without reasons")
    ap.add_argument("--overload", action="store_true",
                    help="measure admission control: capacity, a 30 s burst above it, then 60 s at --rate")
    ap.add_argument("--burst-factor", type=float, default=4.0, help="burst rate / capacity (default 4)")
    ap.add_argument("--burst-seconds", type=float, default=30.0, help="seconds of the burst (default 30)")
    ap.add_argument("--after-seconds", type=float, default=60.0, help="seconds measured after it (default 60)")
    ap.add_argument("--capacity-clients", type=int, default=8,
                    help="back-to-back clients measuring the capacity (default 8)")
    ap.add_argument("--seeds", type=int, default=10_000, help="seed people for /lookalike (default 10,000)")
    ap.add_argument("--skip-lookalike", action="store_true", help="skip /lookalike")
    ap.add_argument("--skip-target", action="store_true", help="skip /target and /target.csv")
    ap.add_argument("--skip-score", action="store_true", help="skip the /score load runs")
    ap.add_argument("--gc-log", type=Path, default=None, metavar="FILE",
                    help="log the server's garbage-collector pauses to FILE.<pid> (benchmarks/gcwatch) and print "
                         "them per load run")
    args = ap.parse_args()

    data = args.data.resolve()
    env = server_env(data)
    if args.gc_log:
        args.gc_log = args.gc_log.resolve()
        env["SCRM_BENCH_GC_LOG"] = str(args.gc_log)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent / "gcwatch"),
                                                          env.get("PYTHONPATH", "")]))
    headers = auth_headers(env)
    if args.prepare:
        prepare(data, args.prepare, args.train_customers, env)

    from features.pipeline import latest_snapshot

    snapshot = latest_snapshot(data)
    feats = snapshot.features
    n_people = len(feats)
    people = feats["person_id"].astype(str).to_numpy()
    eligible = feats.loc[feats["orders"] >= 1]
    seeds = eligible.sort_values(["spend_365d", "person_id"], ascending=[False, True])["person_id"]
    seeds = seeds.head(args.seeds).astype(str).tolist()
    del feats, eligible
    print(f"snapshot {snapshot.path} as of {snapshot.as_of}: {n_people:,} people; "
          f"MLflow {env['MLFLOW_TRACKING_URI']}")

    port = args.port or free_port()
    log = data.parent / f"{data.name}-serve.log"
    server = Server(data, port, env, log)
    try:
        startup = server.wait_ready(timeout=3_600)
        print(f"start-up: ready after {startup:.1f} s (server CPU {server.server_cpu_seconds():.1f} s); "
              f"log {log}")

        if not args.skip_score:
            score_runs(server, people, args, headers)
        if args.overload:
            overload_runs(server, people, args, headers)

        if not args.skip_lookalike:
            elapsed, cpu, r = timed_post(server, "/lookalike",
                                    {"seed_customer_ids": seeds, "fraction": 0.1, "exclude_columns": ["spend_365d"]},
                                    headers)
            body = r.json()
            h = body["holdout"]
            print(f"/lookalike {len(seeds):,} seeds over {n_people:,} people: {elapsed:.1f} s, server CPU {cpu:.1f} s "
                  f"(target {LOOKALIKE_TARGET_S:.0f} s: ratio {elapsed / LOOKALIKE_TARGET_S:.2f}); audience "
                  f"{len(body['audience']):,}, holdout recall@10% {h['recall_at_10pct']:.3f}, lift@10% "
                  f"{h['lift_at_10pct']:.2f}, {len(r.content) / 1e6:.1f} MB")

        budget = round(0.1 * n_people * 0.5, 2)
        campaign = {"campaign_id": "bench-retain", "objective": "retain", "budget": budget,
                    "cost_per_contact": 0.5, "control_fraction": 0.1}
        for path in ("/target", "/target.csv") if not args.skip_target else ():
            elapsed, cpu, r = timed_post(server, path, campaign, headers)
            size = (r.json()["summary"]["audience"] if path == "/target"
                    else r.text.count("\n") - 1)
            print(f"{path} over {n_people:,} people: {elapsed:.1f} s, server CPU {cpu:.1f} s (target {TARGET_TARGET_S:.0f} s: ratio "
                  f"{elapsed / TARGET_TARGET_S:.2f}); audience {size:,}, {len(r.content) / 1e6:.1f} MB")
        print(f"server CPU seconds in total: {server.server_cpu_seconds():.0f}; load average "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
