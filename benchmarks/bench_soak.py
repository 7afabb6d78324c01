"""Soak: a served brand under a steady mixed load for minutes, with a nightly `scrm refresh` in the middle.

1. (``--prepare N``) simulate N customers, train champions on a small separate simulation (bench_serving.prepare);
2. `scrm refresh --as-of DAY1` publishes the first day; `scrm serve` starts on it (``SCRM_RELOAD_SECONDS``,
   default 5 here) — start-up reads the published scores;
3. an open-loop load of ``--rate`` requests/s (default 50) for ``--minutes`` (default 10): ``/score`` without
   reasons, ``/score`` with reasons and ``/tier`` (100 ids each, shares ``--mix``), plus one ``/target`` over
   everyone every ``--target-every`` seconds (default 60);
4. half-way, `scrm refresh --as-of DAY2` (retrain never, drift logged; under ``nice -n 10`` like a batch job
   sharing the host, ``--refresh-nice``) publishes the next day; the running service swaps to it by itself.

Prints per route: requests, errors, p50/p99/max latency (from each request's scheduled send time); when the
answers switched from DAY1 to DAY2 and whether any answer after the switch carried the old day; the server's
resident memory (sum over its processes) after the warm-up, at its peak and at the end (target growth < 10%);
and the pass/fail of the targets (0 errors, ``/score`` p99 < 50 ms, RSS growth < 10%).

Usage::

    python benchmarks/bench_soak.py --data /tmp/soak20k --prepare 20000            # 10 minutes
    python benchmarks/bench_soak.py --data /tmp/soak20k --minutes 3 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from bench_serving import Server, auth_headers, bodies_for, free_port, prepare, server_env

SCORE_P99_TARGET_MS = 50.0
RSS_GROWTH_TARGET = 0.10
DAY2 = "2026-01-01"  # bench_serving.AS_OF: the snapshot prepare() builds
DAY1 = "2025-12-31"


def tree_rss_mb(server: Server) -> float:
    """Resident memory of the server and all its processes, in MB."""
    tree, _ = server._tree()
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total / 1024


def refresh(data: Path, as_of: str, env: dict, nice: int = 0, extra: tuple[str, ...] = ()) -> tuple[int, float, str]:
    """Run `scrm refresh` (under ``nice`` when > 0: a batch job that yields the CPU to the server)."""
    cmd = ["nice", "-n", str(nice)] if nice > 0 else []
    cmd += [str(Path(sys.executable).with_name("scrm")), "refresh", "--data", str(data), "--as-of", as_of,
            "--retrain", "never", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - started, (proc.stderr or proc.stdout).strip().splitlines()[-1]


async def mixed_load(url: str, plan: list[tuple[float, str, bytes]], headers: dict, *, warmup: float,
                     max_in_flight: int = 64, timeout: float = 30.0) -> dict:
    """Send ``plan`` (offset s, route label, body) open-loop; per-label latencies, errors, served dates."""
    import httpx

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight,
                          keepalive_expiry=2.0)
    slots = asyncio.Semaphore(max_in_flight)
    out: dict[str, dict] = {}
    served: list[tuple[float, str]] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout, headers=headers) as client:
        start = time.perf_counter() + 0.2

        async def one(offset: float, label: str, body: bytes) -> None:
            scheduled = start + offset
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path = label.split(" ")[0]
            async with slots:
                sent = time.perf_counter() - start
                try:
                    r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
                    error = None if r.status_code == 200 else f"HTTP {r.status_code}"
                    as_of = None
                    if error is None and path in ("/score", "/tier"):
                        head = r.content[:200].decode("utf-8", "replace")
                        i = head.find('"feature_as_of":"')
                        as_of = head[i + 17:i + 27] if i >= 0 else None
                except httpx.HTTPError as exc:
                    error, as_of = type(exc).__name__, None
            done = time.perf_counter()
            stats = out.setdefault(label, {"latencies": [], "errors": {}})
            if as_of is not None:
                served.append((sent, done - start, as_of))
            if offset < warmup:
                return
            if error is None:
                stats["latencies"].append(done - scheduled)
            else:
                stats["errors"][error] = stats["errors"].get(error, 0) + 1

        await asyncio.gather(*(one(*p) for p in plan))
    return {"routes": out, "served": served}


def summarise(routes: dict) -> dict:
    res = {}
    for label, s in sorted(routes.items()):
        lat = np.array(s["latencies"]) * 1000
        res[label] = {"ok": int(lat.size), "errors": s["errors"],
                      "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
                      "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
                      "max_ms": float(lat.max()) if lat.size else None}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="data directory to serve")
    ap.add_argument("--prepare", type=int, default=None, metavar="N", help="simulate N customers first (if missing)")
    ap.add_argument("--train-customers", type=int, default=5_000, help="customers of the training simulation")
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of load before measuring (default 20)")
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    ap.add_argument("--ids", type=int, default=100, help="ids per /score and /tier request (default 100)")
    ap.add_argument("--mix", default="0.5,0.25,0.25",
                    help="shares of /score without reasons, /score with reasons, /tier (default 0.5,0.25,0.25)")
    ap.add_argument("--target-every", type=float, default=60.0, help="seconds between /target calls (default 60)")
    ap.add_argument("--reload-seconds", type=float, default=5.0, help="SCRM_RELOAD_SECONDS of the server")
    ap.add_argument("--refresh-nice", type=int, default=10,
                    help="nice level of the mid-run refresh (default 10; 0: same priority as the server)")
    ap.add_argument("--refresh-at", type=float, default=0.5,
                    help="when the refresh starts, as a fraction of the measured minutes (default 0.5: the middle)")
    ap.add_argument("--refresh-args", default="", help="extra `scrm refresh` options, e.g. '--no-reasons'")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    data = args.data.resolve()
    env = server_env(data)
    env["SCRM_RELOAD_SECONDS"] = str(args.reload_seconds)
    headers = auth_headers(env)
    if args.prepare:
        prepare(data, args.prepare, args.train_customers, env, train_as_of=DAY1)  # DAY1 is served first

    code, seconds, last = refresh(data, DAY1, env)
    print(f"refresh --as-of {DAY1}: exit {code} in {seconds:.1f} s: {last}", flush=True)
    if code not in (0, 3):
        raise SystemExit("the first refresh failed")
    import pandas as pd

    from training.publish import current_publication

    pub = current_publication(data)
    people = pd.read_parquet(pub.scores_path, columns=["person_id"])["person_id"].astype(str).to_numpy()
    n_people = len(people)

    shares = np.array([float(x) for x in args.mix.split(",")])
    shares = shares / shares.sum()
    labels = ["/score", "/score reasons", "/tier"]
    rng = np.random.default_rng(0)
    bodies = {"/score": bodies_for(people, args.ids, 300, with_reasons=False, seed=0),
              "/score reasons": bodies_for(people, args.ids, 300, with_reasons=True, seed=1),
              "/tier": [json.dumps({"customer_ids": json.loads(b)["customer_ids"]}).encode()
                        for b in bodies_for(people, args.ids, 300, with_reasons=False, seed=2)]}
    target = json.dumps({"campaign_id": "soak-retain", "objective": "retain", "budget": round(0.05 * n_people, 2),
                         "cost_per_contact": 0.5, "control_fraction": 0.1}).encode()
    duration = args.warmup + args.minutes * 60
    n = int(duration * args.rate)
    kinds = rng.choice(len(labels), size=n, p=shares)
    plan = [(i / args.rate, labels[k], bodies[labels[k]][i % 300]) for i, k in enumerate(kinds)]
    plan += [(t, "/target", target) for t in np.arange(args.warmup + 5, duration, args.target_every)]
    plan.sort(key=lambda p: p[0])

    port = free_port()
    log = data.parent / f"{data.name}-soak-serve.log"
    server = Server(data, port, env, log)
    rss: list[tuple[float, float]] = []
    events: dict[str, float] = {}
    try:
        startup = server.wait_ready(timeout=3_600)
        print(f"start-up on publication {pub.name} ({n_people:,} people): ready after {startup:.1f} s", flush=True)
        print(f"load: {args.rate:g} req/s for {args.warmup:.0f} s warm-up + {args.minutes:g} min, mix "
              f"{dict(zip(labels, np.round(shares, 3).tolist(), strict=True))}, /target every {args.target_every:g} s",
              flush=True)
        t0 = time.perf_counter()
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(5):
                rss.append((time.perf_counter() - t0, tree_rss_mb(server)))
            rss.append((time.perf_counter() - t0, tree_rss_mb(server)))

        def mid_refresh() -> None:
            if stop.wait(args.warmup + args.minutes * 60 * args.refresh_at):
                return
            events["refresh_start"] = time.perf_counter() - t0
            code, seconds, last = refresh(data, DAY2, env, args.refresh_nice, tuple(args.refresh_args.split()))
            events["refresh_end"] = time.perf_counter() - t0
            events["refresh_exit"] = code
            print(f"refresh --as-of {DAY2} at {events['refresh_start']:.0f} s: exit {code} in {seconds:.1f} s: "
                  f"{last}", flush=True)

        threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=mid_refresh, daemon=True)]
        for t in threads:
            t.start()
        result = asyncio.run(mixed_load(server.url, plan, headers, warmup=args.warmup))
        stop.set()
        for t in threads:
            t.join(timeout=600)
    finally:
        server.stop()

    routes = summarise(result["routes"])
    # the swap: the first answer carrying DAY2; a request sent after it must carry DAY2 too (one sent before may
    # still answer from the old state: it keeps the state it started with)
    first_new = min((done for _, done, d in result["served"] if d == DAY2), default=None)
    stale_after = sum(1 for sent, _, d in result["served"] if first_new is not None and sent > first_new and d != DAY2)
    after_warmup = [m for t, m in rss if t >= args.warmup] or [m for _, m in rss]
    rss_start, rss_peak, rss_end = after_warmup[0], max(after_warmup), after_warmup[-1]
    growth = rss_end / rss_start - 1
    errors = sum(sum(r["errors"].values()) for r in routes.values())
    score_p99 = max(routes[k]["p99_ms"] or 0.0 for k in ("/score", "/score reasons") if k in routes)
    print(f"\n{'route':<16}{'ok':>8}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, r in routes.items():
        def fmt(v):
            return "-" if v is None else f"{v:.1f}"
        print(f"{label:<16}{r['ok']:>8}{sum(r['errors'].values()):>8}{fmt(r['p50_ms']):>9}{fmt(r['p99_ms']):>9}"
              f"{fmt(r['max_ms']):>9}  {r['errors'] or ''}")
    swap = (f"first {DAY2} answer {first_new - events.get('refresh_end', 0):.1f} s after the refresh ended"
            if first_new is not None else f"no answer carried {DAY2}")
    print(f"refresh: {events}; {swap}; answers with the old day after that: {stale_after}")
    print(f"RSS (server, all processes): after warm-up {rss_start:.0f} MB, peak {rss_peak:.0f} MB, end "
          f"{rss_end:.0f} MB: growth {growth:+.1%} (target < {RSS_GROWTH_TARGET:.0%})")
    verdict = {"errors == 0": errors == 0, f"/score p99 < {SCORE_P99_TARGET_MS:.0f} ms": score_p99 < SCORE_P99_TARGET_MS,
               f"RSS growth < {RSS_GROWTH_TARGET:.0%}": growth < RSS_GROWTH_TARGET,
               "swapped to the new day": first_new is not None and stale_after == 0}
    print("targets: " + ", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in verdict.items()))
    if args.json:
        args.json.write_text(json.dumps({"people": n_people, "startup_s": startup, "minutes": args.minutes,
                                         "rate": args.rate, "mix": dict(zip(labels, shares.tolist(), strict=True)),
                                         "routes": routes, "refresh": events, "first_new_answer_s": first_new,
                                         "load_seconds": args.warmup + args.minutes * 60,
                                         "stale_after_swap": stale_after, "rss_mb": rss, "rss_growth": growth,
                                         "verdict": verdict}, indent=2))


if __name__ == "__main__":
    main()
