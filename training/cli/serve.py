"""`scrm serve`: the HTTP service (BentoML) on a data directory and its champions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from features.errors import InputError
from training.cli.base import (
    BrandOpt,
    app,
    brand_of,
    console,
    exit_2_on,
)


@app.command()
@exit_2_on(FileNotFoundError, LookupError)
def serve(
    data: Annotated[Path | None, typer.Option("--data", envvar="SCRM_DATA_DIR", file_okay=False,
                                              help="Data directory whose newest feature snapshot is served "
                                                   "(DATA/features/as_of=DATE/).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    brand: BrandOpt = None,
) -> None:
    """Serve scores, tiers, lookalike audiences and campaign targeting over HTTP (BentoML).

    A thin wrapper over `bentoml serve serving.service:ScrmService`: checks that --data has a feature snapshot and
    the registry has `champion` churn and CLV models (else exits 2 naming the command that creates them), then
    starts the server. OpenAPI docs at http://HOST:PORT/; set SCRM_API_TOKEN to require a bearer token.
    """
    import importlib.util
    import json
    import os

    from features.pii import check_pii_fingerprint
    from features.pipeline import newest_snapshot_dir
    from features.snapshot_check import SnapshotError, validate_snapshot
    from training import registry, tracking

    if data is None:
        raise InputError("give --data D (or set SCRM_DATA_DIR): the data directory to serve", field="--data")
    if not data.is_dir():
        raise InputError(f"data directory {data} does not exist; create one with "
                         f"`scrm simulate --customers 5000 --seed 7 --out {data}`", field="--data")
    as_of, snapshot_dir = newest_snapshot_dir(data)  # FileNotFoundError: no snapshot yet
    try:
        validate_snapshot(snapshot_dir)
    except SnapshotError as exc:
        raise InputError(f"{exc}; rebuild it with `scrm features build --data {data} --as-of {as_of}`",
                         field="--data") from None
    check_pii_fingerprint(json.loads((snapshot_dir / "manifest.json").read_text()))  # PIIKeyError: exit 2
    example_id = _example_person(snapshot_dir / "features.parquet")
    brand = brand_of(data, brand)
    names = {kind: registry.model_name(brand, kind) for kind in ("churn", "clv")}
    versions = {kind: registry.champion_version(name) for kind, name in names.items()}
    missing = [names[kind] for kind, v in versions.items() if v is None]
    if missing:
        raise LookupError(f"no champion {' or '.join(missing)} model of brand {brand} in {tracking.tracking_uri()}; "
                          f"create them with `scrm train all --data {data} --as-of {as_of}`")
    spec = importlib.util.find_spec("serving")  # locates the package without importing it
    workdir = Path(spec.origin).parent.parent if spec is not None and spec.origin else Path.cwd()
    env = {**os.environ, "SCRM_DATA_DIR": str(data.resolve()), "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
           "SCRM_BRAND": brand}
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.service:ScrmService", "--host", host,
           "--port", str(port), "--working-dir", str(workdir)]
    url = f"http://{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("SCRM_API_TOKEN", "").strip():
        console.print(f"[yellow]warning:[/] listening on {host} without SCRM_API_TOKEN: anyone who can reach "
                      "this port can call the service; set SCRM_API_TOKEN to require a bearer token")
    console.print(
        f"serving {data} (snapshot as of {as_of}) with {names['churn']} v{versions['churn']}, "
        f"{names['clv']} v{versions['clv']} on {url}\n"
        f"docs: {url}/   ready when {url}/readyz answers 200   example:\n"
        f"  curl -s -X POST {url}/score -H 'Content-Type: application/json' "
        f"-d '{{\"customer_ids\": [\"{example_id}\"]}}'",
        soft_wrap=True,  # one line, so the command can be copied
    )
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def _example_person(features_path: Path) -> str:
    """A scored ``person_id`` (one with a paid order) for the example call, read from the first row group only."""
    import pyarrow.parquet as pq

    try:
        group = pq.ParquetFile(features_path).read_row_group(0, columns=["person_id", "orders"]).to_pandas()
    except (OSError, KeyError, IndexError, ValueError):
        return "<person_id or customer_key>"
    buyers = group.loc[group["orders"].fillna(0) > 0, "person_id"]
    ids = buyers if len(buyers) else group["person_id"]
    return str(ids.iloc[0]) if len(ids) else "<person_id or customer_key>"
