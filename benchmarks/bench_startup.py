"""Start-up from a publication at large populations, without simulating and scoring a large brand.

``scrm refresh`` publishes the snapshot and everyone's batch scores (reasons included); the service's start-up
reads them instead of scoring. This benchmark takes the current publication of a served data directory and
writes a publication ``--scale`` times larger into ``--out`` (every person copied under new ``person_id``s and
channel keys, same features and scores: the files a refresh of a brand that size writes, in the same format),
then measures:

1. ``serving.reload.build_state`` in this process (read and check the snapshot copy and ``scores.parquet``,
   load the champions, index), wall and CPU seconds, best of ``--repeat``;
2. ``scrm serve --data OUT`` until ``/readyz`` answers 200 (what an operator waits for), wall seconds and the
   server's CPU seconds.

Usage::

    python benchmarks/bench_startup.py --data /tmp/b20k --out /tmp/b1m --scale 40

``MLFLOW_TRACKING_URI`` must point at the store holding the champions (default: ``DATA/mlruns/mlflow.db``, as
``bench_serving.py --prepare`` makes it); the copy's ``brand.yaml`` names the source's brand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))

TARGET_S = 20.0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tile(frame: pd.DataFrame, k: int, columns: tuple[str, ...]) -> pd.DataFrame:
    """``k`` copies of ``frame``; in copy c > 0 the ``columns`` get the suffix ``~c``."""
    out = pd.concat([frame] * k, ignore_index=True)
    suffix = np.repeat([""] + [f"~{c}" for c in range(1, k)], len(frame))
    for col in columns:
        out[col] = frame[col].astype(str).to_numpy(dtype=object).tolist() * k
        out[col] = out[col].to_numpy(dtype=object) + suffix
    return out


def write_scaled(data: Path, out: Path, k: int) -> tuple[str, int]:
    """A publication ``k`` times the current one of ``data``, written under ``out/published`` and made current."""
    from features.brand import load_brand
    from training.publish import PUBLISHED, SCORES, SNAPSHOT, current_publication, switch_current

    pub = current_publication(data)
    if pub is None:
        raise SystemExit(f"{data} has no publication: run `scrm refresh --data {data}` first")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source_brand = data / "brand.yaml"
    if source_brand.exists():
        shutil.copy(source_brand, out / "brand.yaml")
    else:  # the source's brand is its directory name: the copy serves the same brand's champions
        (out / "brand.yaml").write_text(f"brand: {load_brand(data).brand}\n")
    target = out / PUBLISHED / f"{pub.name}-x{k}"
    (target / SNAPSHOT).mkdir(parents=True)
    features = tile(pd.read_parquet(pub.snapshot_dir / "features.parquet"), k, ("person_id",))
    features.to_parquet(target / SNAPSHOT / "features.parquet", index=False)
    identity = tile(pd.read_parquet(pub.snapshot_dir / "identity.parquet"), k, ("customer_key", "person_id"))
    identity.to_parquet(target / SNAPSHOT / "identity.parquet", index=False)
    shutil.copy(pub.snapshot_dir / "manifest.json", target / SNAPSHOT / "manifest.json")
    scores = tile(pd.read_parquet(pub.scores_path), k, ("person_id",))
    scores.to_parquet(target / SCORES, index=False)
    manifest = dict(pub.manifest, people=len(scores), eligible=int(scores["eligible"].sum()))
    manifest["notes"] = [*manifest.get("notes", []), f"bench_startup: {k} copies of {pub.name}"]
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    # the snapshot the refresh built stays under DATA/features too (`scrm serve` checks that one exists)
    built = out / "features" / f"as_of={pub.as_of.isoformat()}"
    built.mkdir(parents=True)
    for f in (target / SNAPSHOT).iterdir():
        os.link(f, built / f.name)
    switch_current(out, target.name)
    return target.name, len(scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a data directory with a publication (scrm refresh)")
    ap.add_argument("--out", type=Path, required=True, help="where to write the scaled copy (replaced)")
    ap.add_argument("--scale", type=int, default=40, help="copies of everyone (default 40: 26k -> 1M)")
    ap.add_argument("--repeat", type=int, default=2, help="in-process builds (best kept, default 2)")
    ap.add_argument("--skip-serve", action="store_true", help="only the in-process build")
    ap.add_argument("--reuse", action="store_true", help="use the copy already in --out (do not write it again)")
    args = ap.parse_args()

    from bench_serving import Server, free_port, server_env

    data, out = args.data.resolve(), args.out.resolve()
    env = server_env(data)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW", "SCRM"))})
    started = time.perf_counter()
    if args.reuse:
        from training.publish import current_publication

        pub = current_publication(out)
        name, people = pub.name, int(pub.manifest["people"])
    else:
        name, people = write_scaled(data, out, args.scale)
    print(f"publication {name}: {people:,} people written in {time.perf_counter() - started:.1f} s "
          f"({sum(f.stat().st_size for f in (out / 'published' / name).rglob('*') if f.is_file()) / 1e6:.0f} MB)",
          flush=True)

    from serving.reload import build_state, current_source

    best = None
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), cpu_seconds()
        state = build_state(out, current_source(out))
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        assert state.n_people == people and state.reasons_by_lookup()
        del state
        best = min(best or (wall, cpu), (wall, cpu))
        print(f"  build_state: {wall:.1f} s wall, {cpu:.1f} s CPU; load average {os.getloadavg()[0]:.1f}",
              flush=True)
    print(f"in-process start-up from the publication, {people:,} people: best {best[0]:.1f} s wall, "
          f"{best[1]:.1f} s CPU (target {TARGET_S:.0f} s)")
    if args.skip_serve:
        return
    server = Server(out, free_port(), env, out.parent / f"{out.name}-serve.log")
    try:
        ready = server.wait_ready(timeout=1_800)
        print(f"scrm serve -> /readyz 200: {ready:.1f} s wall, server CPU {server.server_cpu_seconds():.1f} s "
              f"(target {TARGET_S:.0f} s: ratio {ready / TARGET_S:.2f}); load average {os.getloadavg()[0]:.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
