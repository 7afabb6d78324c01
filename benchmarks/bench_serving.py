"""Benchmark the HTTP service: starts `scrm serve` on loopback and measures what marketing systems feel.

1. start-up: seconds from `scrm serve` to ``/readyz`` 200 (loading the champions and scoring the whole snapshot);
2. ``POST /score`` with 100 ids per request at a steady (open-loop) 50 requests/s for 60 s after a 5 s warm-up:
   p50 / p90 / p99 / max latency, throughput and errors (target: p99 < 50 ms, 0 errors on 2 cores). Requests
   leave on a fixed schedule whatever the server does, so a slow server shows up as latency, not as a lower
   rate; latency is measured from the scheduled send time (client-side queueing included). The headline run
   asks ``with_reasons: false``; a second, lower-rate run (``--reasons-rate``) measures the churn reasons,
   whose TreeSHAP contributions cost milliseconds of CPU per person;
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


def prepare(data: Path, n: int, train_customers: int, env: dict) -> None:
    """Simulate ``n`` customers and their snapshot; train champions on a small separate simulation if needed."""
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
        scrm("train", "all", "--data", str(train), "--as-of", AS_OF, "--cutoffs", "1", "--brand", brand, env=env)


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


async def steady_load(url: str, bodies: list[bytes], rate: float, duration: float, warmup: float,
                      headers: dict, *, max_in_flight: int = 64, timeout: float = 30.0) -> dict:
    """Send ``bodies`` round-robin at ``rate``/s (open loop); latency from each request's scheduled time.

    At most ``max_in_flight`` requests are outstanding (one connection each); a request that finds them all busy
    waits for a slot, and that wait counts in its latency. A request not answered within ``timeout`` seconds is
    an error.
    """
    import httpx

    # one keep-alive connection per in-flight slot: httpcore never queues (its pool gets slow with long queues);
    # idle connections are dropped before uvicorn's 5 s keep-alive timeout can race a request
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight,
                          keepalive_expiry=2.0)
    slots = asyncio.Semaphore(max_in_flight)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lags: list[float] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, headers=headers) as client:
        start = time.perf_counter() + 0.2
        total = int((warmup + duration) * rate)

        async def one(i: int) -> None:
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with slots:
                lag = time.perf_counter() - scheduled
                try:
                    r = await client.post("/score", content=bodies[i % len(bodies)],
                                          headers={"Content-Type": "application/json"})
                    ok = r.status_code == 200 and r.content.startswith(b'{"model_versions"')
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
            done = time.perf_counter()
            if i >= warmup * rate:
                if key is None:
                    latencies.append(done - scheduled)
                else:
                    errors[key] = errors.get(key, 0) + 1
                lags.append(lag)

        measured_start = start + warmup
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - measured_start
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
    }


def bodies_for(people: np.ndarray, n_ids: int, n_bodies: int, *, with_reasons: bool, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [json.dumps({"customer_ids": rng.choice(people, n_ids, replace=False).tolist(),
                        "with_reasons": with_reasons}).encode() for _ in range(n_bodies)]


def print_load(label: str, res: dict, *, rate: float, target_ms: float | None) -> None:
    print(f"{label}: {res['requests']} requests at {rate:g}/s -> {res['throughput_rps']:.1f} ok/s, "
          f"errors {sum(res['errors'].values())} {res['errors'] or ''}")
    print(f"  latency ms: p50 {res['p50_ms']:.1f}  p90 {res['p90_ms']:.1f}  p99 {res['p99_ms']:.1f}  "
          f"max {res['max_ms']:.1f}  (max wait before sending {res['max_send_lag_ms']:.1f})")
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


def score_runs(server: Server, people: np.ndarray, args, headers: dict) -> None:
    """The steady /score load without reasons, then the lower-rate run with reasons."""
    cpu0, srv0 = cpu_seconds(), server.server_cpu_seconds()
    res = asyncio.run(steady_load(server.url, bodies_for(people, args.ids, 500, with_reasons=False, seed=0),
                                  args.rate, args.duration, args.warmup, headers))
    cpu1, srv1 = cpu_seconds(), server.server_cpu_seconds()
    print_load(f"/score {args.ids} ids, no reasons", res, rate=args.rate, target_ms=SCORE_P99_TARGET_MS)
    span = args.duration + args.warmup
    print(f"  CPU: server {(srv1 - srv0) / span:.2f} cores ({(srv1 - srv0) / (span * args.rate) * 1000:.1f} ms per "
          f"request), load generator {(cpu1 - cpu0) / span:.2f} cores")
    if args.reasons_rate > 0:
        res_r = asyncio.run(steady_load(server.url, bodies_for(people, args.ids, 200, with_reasons=True, seed=1),
                                        args.reasons_rate, args.reasons_duration, 2.0, headers))
        print_load(f"/score {args.ids} ids, with reasons", res_r, rate=args.reasons_rate, target_ms=None)


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
    ap.add_argument("--reasons-rate", type=float, default=2.0,
                    help="rate of the second /score run, with reasons (0 skips it; default 2/s)")
    ap.add_argument("--reasons-duration", type=float, default=20.0, help="seconds of the reasons run")
    ap.add_argument("--seeds", type=int, default=10_000, help="seed people for /lookalike (default 10,000)")
    ap.add_argument("--skip-lookalike", action="store_true", help="skip /lookalike")
    ap.add_argument("--skip-target", action="store_true", help="skip /target and /target.csv")
    ap.add_argument("--skip-score", action="store_true", help="skip the /score load runs")
    args = ap.parse_args()

    env = dict(os.environ)
    data = args.data.resolve()
    if "MLFLOW_TRACKING_URI" not in env:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{data}/mlruns/mlflow.db"
        env.setdefault("SCRM_ARTIFACT_ROOT", str(data / "mlruns" / "artifacts"))
    env.setdefault("SCRM_PII_KEY", "bench-pii-key")
    env["BENTOML_DO_NOT_TRACK"] = "true"
    token = env.get("SCRM_API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
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
