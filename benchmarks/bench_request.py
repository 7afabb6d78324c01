"""CPU cost of one ``/score`` request in-process, by population size: does it grow with the snapshot?

The HTTP benchmarks (``bench_serving.py``, ``bench_soak.py``) measure what a caller feels, which on a shared
machine is mostly the machine. This one measures the design: it builds the service's state for a served data
directory, then the same state for a population ``--scale`` times larger (every person of the snapshot copied
under new ``person_id``s and channel keys, with the same features and batch scores: what ``scrm refresh``
would publish for a brand that size), and runs the exact code of a request — ``ScrmService.score`` (id
resolution, reasons by lookup, records, the pydantic response) and the JSON serialisation BentoML does
(``model_dump_json``) — on the event loop of this process, timing each phase in CPU time of this thread
(``time.thread_time``: what other processes do on the machine does not count).

Usage::

    python benchmarks/bench_request.py --data /tmp/b20k --sizes 1,10,40     # 26k, 260k and 1M people
    python benchmarks/bench_request.py --data /tmp/b20k --sizes 1,40 --profile   # + cProfile of the 1M state

``MLFLOW_TRACKING_URI`` must point at the store holding the champions (default: ``DATA/mlruns/mlflow.db``, as
``bench_serving.py --prepare`` makes it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))


def tiled(state, k: int):
    """The state's snapshot and batch scores for ``k`` times the people: copy c > 0 of person ``p_x`` is
    ``p_x~c`` (its keys ``key~c``), with the same features and scores."""
    from features.pipeline import Snapshot

    if k == 1:
        return state.snapshot, state.scores
    n = len(state.features)
    suffix = np.repeat([""] + [f"~{c}" for c in range(1, k)], n)
    features = pd.concat([state.features] * k, ignore_index=True)
    features["person_id"] = features["person_id"].astype(str).to_numpy(dtype=object) + suffix
    scores = pd.concat([state.scores] * k, ignore_index=True)
    scores["person_id"] = features["person_id"].to_numpy()
    ident = state.identity
    isuf = np.repeat([""] + [f"~{c}" for c in range(1, k)], len(ident))
    identity = pd.concat([ident] * k, ignore_index=True)
    for col in ("customer_key", "person_id"):
        identity[col] = identity[col].astype(str).to_numpy(dtype=object) + isuf
    snapshot = Snapshot(features=features, identity=identity, manifest=state.snapshot.manifest,
                        path=state.snapshot.path)
    return snapshot, scores


def service_for(state):
    """A ``ScrmService`` instance serving ``state`` (no background load, no reload thread)."""
    from serving.service import ScrmService

    cls = ScrmService.inner
    svc = cls.__new__(cls)
    svc.state, svc.load_error = state, None
    return svc


def time_requests(svc, bodies: list[list[str]], with_reasons: bool) -> dict[str, np.ndarray]:
    """CPU ms per phase and in total for each body: the phases of ``ScrmService.score`` timed one by one, then
    the whole method + ``model_dump_json`` as one call (the figure that counts)."""
    from serving.schemas import ScoreRequest, ScoreResponse
    from serving.service import respond

    state = svc.state
    phases: dict[str, list[float]] = {k: [] for k in ("validate", "resolve", "reasons", "records", "respond",
                                                      "json", "handler+json")}
    clock = time.thread_time

    async def whole(ids: list[str]) -> bytes:
        return (await svc.score(customer_ids=ids, with_reasons=with_reasons)).model_dump_json().encode()

    loop = asyncio.new_event_loop()
    try:
        for ids in bodies:
            t0 = clock()
            req = ScoreRequest(customer_ids=ids, with_reasons=with_reasons)
            t1 = clock()
            found = state.resolve(req.customer_ids)
            t2 = clock()
            reasons = state.reasons(found.positions) if with_reasons else None
            t3 = clock()
            records = state.score_records(found.positions, reasons=reasons)
            for record, given in zip(records, found.ids, strict=True):
                record["id"] = given
            t4 = clock()
            resp = respond(ScoreResponse, **svc._served(state), results=records, not_found=found.not_found)
            t5 = clock()
            resp.model_dump_json().encode()
            t6 = clock()
            loop.run_until_complete(whole(ids))
            t7 = clock()
            for key, a, b in (("validate", t0, t1), ("resolve", t1, t2), ("reasons", t2, t3), ("records", t3, t4),
                              ("respond", t4, t5), ("json", t5, t6), ("handler+json", t6, t7)):
                phases[key].append((b - a) * 1000)
    finally:
        loop.close()
    return {k: np.array(v) for k, v in phases.items()}


def bodies_for(state, n_ids: int, n: int, seed: int, key_share: float) -> list[list[str]]:
    """``n`` requests of ``n_ids`` distinct people drawn over the whole population (a share of them by channel
    key rather than person_id), so every request touches rows all over the arrays."""
    rng = np.random.default_rng(seed)
    people = state.features["person_id"].astype(str).to_numpy()
    keys = state.identity["customer_key"].astype(str).to_numpy()
    out = []
    for _ in range(n):
        ids = rng.choice(people, n_ids, replace=False).tolist()
        n_keys = int(round(key_share * n_ids))
        ids[:n_keys] = rng.choice(keys, n_keys, replace=False).tolist()
        out.append(ids)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a served data directory (publication or snapshot)")
    ap.add_argument("--sizes", default="1,10,40", help="population multiples to measure (default 1,10,40)")
    ap.add_argument("--requests", type=int, default=400, help="timed requests per size and mode (default 400)")
    ap.add_argument("--ids", type=int, default=100, help="ids per request (default 100)")
    ap.add_argument("--key-share", type=float, default=0.2, help="share of ids sent as channel keys (default 0.2)")
    ap.add_argument("--profile", action="store_true", help="cProfile the handler on the largest size")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from bench_serving import server_env

    data = args.data.resolve()
    os.environ.update({k: v for k, v in server_env(data).items() if k.startswith(("MLFLOW", "SCRM"))})
    from serving.reload import build_state, current_source
    from serving.state import ServingState

    started = time.perf_counter()
    base = build_state(data, current_source(data))
    print(f"base state: {len(base.features):,} people in {time.perf_counter() - started:.1f} s "
          f"({base.publication or 'scored at start'}); load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    for k in (int(x) for x in args.sizes.split(",")):
        if k == 1:
            state = base
        else:
            snapshot, scores = tiled(base, k)
            t0 = time.perf_counter()
            state = ServingState(base.models, snapshot, rules=base.rules, data_dir=data, scores=scores)
            print(f"x{k}: state of {len(state.features):,} people built from the scores in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            del snapshot, scores
        gc.collect()
        gc.freeze()  # as the service does after installing a state
        svc = service_for(state)
        assert state.reasons_by_lookup()
        row = {}
        for with_reasons in (True, False):
            bodies = bodies_for(state, args.ids, args.requests + 20, seed=k, key_share=args.key_share)
            time_requests(svc, bodies[:20], with_reasons)  # warm-up
            t = time_requests(svc, bodies[20:], with_reasons)
            label = "reasons" if with_reasons else "plain"
            row[label] = {p: {"median": float(np.median(v)), "p99": float(np.percentile(v, 99))}
                          for p, v in t.items()}
            parts = "  ".join(f"{p} {np.median(v):.2f}" for p, v in t.items() if p != "handler+json")
            total = t["handler+json"]
            print(f"  {len(state.features):>9,} people, {label:<7}: handler + JSON {np.median(total):.2f} CPU-ms "
                  f"(p99 {np.percentile(total, 99):.2f}); phases (median ms): {parts}; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        results[len(state.features)] = row
        if args.profile and k == max(int(x) for x in args.sizes.split(",")):
            bodies = bodies_for(state, args.ids, 200, seed=99, key_share=args.key_share)
            prof = cProfile.Profile()
            prof.enable()
            time_requests(svc, bodies, True)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        gc.unfreeze()
        if state is not base:
            del state, svc
            gc.collect()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
