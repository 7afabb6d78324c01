"""MLflow tracking: where runs go and what every run logs.

Every training, backtest and lookalike run goes through this module so the conventions in
``docs/architecture.md`` ("MLflow conventions") hold in one place:

- the tracking URI (``MLFLOW_TRACKING_URI`` or the embedded ``sqlite:///<cwd>/mlruns/mlflow.db``) and the
  artifact root (``SCRM_ARTIFACT_ROOT`` or ``<cwd>/mlruns/artifacts``) — set only by :func:`configure`,
  never at import time;
- experiments and runs (:func:`start_run`), the data fingerprint, the feature list, plots, JSON artifacts.

Models are logged by :mod:`training.pyfunc` (the MLflow pyfunc wrapper around our estimators) and registered,
gated and loaded back by :mod:`training.registry` (aliases ``champion`` / ``challenger``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import socket
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# mlflow is heavy to import; it is imported lazily inside functions so `import training.tracking` is cheap
# and sets no state.

EXPERIMENTS = ("churn", "clv", "lookalike", "backtest")

TAG_KIND = "scrm.kind"
TAG_FINGERPRINT = "scrm.data_fingerprint"
TAG_AS_OF = "scrm.as_of"
TAG_FEATURE_CONFIG = "scrm.feature_config"  # the FeatureConfig (JSON) of the snapshots a model was trained on
TAG_ERROR = "scrm.error"
TAG_CODE_VERSION = "scrm.code_version"
TAG_GIT_COMMIT = "scrm.git_commit"
TAG_PROCESS = "scrm.process"  # "<pid>:<start time>" of the process running the run (see mark_dead_runs_failed)
TAG_HOST = "scrm.host"

PLOT_NAMES = ("roc", "calibration", "gains", "clv_deciles", "feature_importance", "expansion_curve")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_QUIET_LOGGERS = (
    "alembic",
    "alembic.runtime.migration",
    "mlflow.store.db.utils",
    "mlflow.store.model_registry.abstract_store",
    "mlflow.tracking._tracking_service.client",
    "mlflow.models.model",
    "mlflow.pyfunc",
    "mlflow.utils.environment",
    "mlflow.utils.requirements_utils",
)


# --------------------------------------------------------------------------------------------------------------
# Where runs go
# --------------------------------------------------------------------------------------------------------------
def tracking_uri() -> str:
    """The MLflow tracking URI in effect.

    Returns
    -------
    str
        ``MLFLOW_TRACKING_URI`` when set, else the embedded store ``sqlite:///<cwd>/mlruns/mlflow.db``
        (an absolute path, so a later ``chdir`` does not move it).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{(Path.cwd() / 'mlruns' / 'mlflow.db').resolve()}"


def artifact_root() -> str | None:
    """Where new experiments keep their artifacts.

    Returns
    -------
    str or None
        ``SCRM_ARTIFACT_ROOT`` when set; else ``artifacts/`` beside the database for a ``sqlite:///`` store
        (``<cwd>/mlruns/artifacts`` for the embedded default); ``None`` for a remote tracking server, which
        decides itself.
    """
    env = os.environ.get("SCRM_ARTIFACT_ROOT", "").strip()
    if env:
        return env if "://" in env else str(Path(env).resolve())
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        db_path = uri.removeprefix("sqlite:///")
        if db_path and db_path != ":memory:":
            return str(Path(db_path).resolve().parent / "artifacts")
    return None


def configure() -> str:
    """Point MLflow's tracking and registry at :func:`tracking_uri` and quiet its log noise.

    Called by every function here that talks to MLflow; safe to call repeatedly. The environment is read
    each time, so a changed ``MLFLOW_TRACKING_URI`` takes effect on the next call.

    Returns
    -------
    str
        The tracking URI now in effect.
    """
    import mlflow

    _quiet_mlflow_logs()
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri not in _CHECKED_STORES:
        _CHECKED_STORES.add(uri)
        mark_dead_runs_failed()
    return uri


_CHECKED_STORES: set[str] = set()


def _process_token(pid: int) -> str | None:
    """``"<pid>:<start time>"`` of a live process (None when it is gone or a zombie); PID reuse changes it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): the pid alone, alive or not
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid}:{fields[19]}"  # field 22 of stat: start time in clock ticks since boot


def mark_dead_runs_failed() -> list[str]:
    """Mark ``FAILED`` the runs left ``RUNNING`` by a process of this machine that no longer exists.

    A run killed mid-way (``kill -9``, an OOM kill, a closed laptop) cannot end itself; every run records its
    process (tag ``scrm.process``) and host, and the first MLflow call of the next command on the same machine
    (:func:`configure`) ends such runs with status ``FAILED`` and tag ``scrm.error`` saying why. Runs of other
    machines, and runs without the tags, are left alone.

    Returns
    -------
    list of str
        The run ids marked failed.
    """
    from mlflow import MlflowClient

    uri = tracking_uri()
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        experiments = [e.experiment_id for e in c.search_experiments()]
        runs = c.search_runs(experiments, filter_string="attributes.status = 'RUNNING'",
                             max_results=1000) if experiments else []
    except Exception:  # noqa: BLE001 - a store that cannot be searched yet is checked on first real use
        _CHECKED_STORES.discard(uri)
        return []
    host = socket.gethostname()
    marked = []
    for run in runs:
        tags = run.data.tags
        token, run_host = tags.get(TAG_PROCESS), tags.get(TAG_HOST)
        if not token or run_host != host:
            continue
        pid = int(token.split(":", 1)[0])
        if _process_token(pid) == token:
            continue
        c.set_tag(run.info.run_id, TAG_ERROR, f"killed: process {pid} on {host} ended without closing the run")
        c.set_terminated(run.info.run_id, status="FAILED")
        marked.append(run.info.run_id)
    if marked:
        logging.getLogger(__name__).warning(
            "marked %d run(s) FAILED whose process was killed mid-way: %s", len(marked), ", ".join(marked))
    return marked


def client():
    """A configured :class:`mlflow.MlflowClient` for tracking and registry calls."""
    from mlflow import MlflowClient

    uri = configure()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _quiet_mlflow_logs() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_or_create_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts under :func:`artifact_root`) if needed.

    Parameters
    ----------
    name : str
        Experiment name, e.g. ``"churn"``.

    Returns
    -------
    str
        The experiment id.
    """
    from mlflow.exceptions import MlflowException

    check_name(name, "experiment")
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = artifact_root()
    location = None
    if root is not None:
        location = f"{root.rstrip('/')}/{name}" if "://" in root else Path(root, name).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another process created it between our lookup and the create.
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid {what} name {name!r}: use letters, digits, '_', '-' or '.'")


# --------------------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------------------
def _param_value(value: Any) -> str:
    """MLflow stores params as strings; sequences become comma-separated (``cutoffs``), dates ISO strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, pd.Timestamp | datetime):
        return value.date().isoformat() if value == pd.Timestamp(value).normalize() else value.isoformat()
    if isinstance(value, list | tuple | set | np.ndarray | pd.Index):
        return ",".join(_param_value(v) for v in value)
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


@contextlib.contextmanager
def start_run(
    experiment: str,
    *,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Start an MLflow run in ``experiment`` (created if needed) and end it when the block exits.

    Parameters
    ----------
    experiment : str
        Experiment name (``churn``, ``clv``, ``lookalike``, ``backtest``, ...).
    run_name : str, optional
        Human-readable run name.
    params : mapping, optional
        Logged as params; lists/tuples become comma-separated strings, timestamps ISO dates.
    tags : mapping, optional
        Logged as tags. ``scrm.kind`` defaults to the experiment name for the project's experiments;
        ``scrm.code_version`` and ``scrm.git_commit`` are added.

    Yields
    ------
    mlflow.ActiveRun
        The active run (``run.info.run_id``). Started nested when another run is already active.

    Notes
    -----
    A process killed inside the block leaves the run ``RUNNING``; the next command marks it ``FAILED``
    (:func:`mark_dead_runs_failed`). An exception inside the block marks the run ``FAILED`` (``KILLED`` for ``KeyboardInterrupt``), records the
    exception type in tag ``scrm.error`` and is re-raised. Registry aliases are only moved by explicit calls
    (:func:`promotion_gate`, :func:`promote`, :func:`rollback`), so a run that fails part-way never moves
    ``champion``.
    """
    import mlflow

    configure()
    experiment_id = get_or_create_experiment(experiment)
    all_tags: dict[str, str] = {}
    if experiment in EXPERIMENTS:
        all_tags[TAG_KIND] = experiment
    all_tags.update(code_tags())
    all_tags[TAG_PROCESS] = _process_token(os.getpid()) or str(os.getpid())
    all_tags[TAG_HOST] = socket.gethostname()
    all_tags.update({k: _param_value(v) for k, v in (tags or {}).items()})
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags=all_tags,
        nested=mlflow.active_run() is not None,
    )
    try:
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
        yield run
    except BaseException as exc:
        with contextlib.suppress(Exception):
            mlflow.set_tag(TAG_ERROR, type(exc).__name__)
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        mlflow.end_run(status=status)
        raise
    else:
        mlflow.end_run(status="FINISHED")


def active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: call this inside `with tracking.start_run(...)`")
    return run.info.run_id


_CODE_TAGS: dict[str, str] | None = None


def code_tags() -> dict[str, str]:
    """Package version and git commit of the code doing the logging (computed once per process)."""
    global _CODE_TAGS
    if _CODE_TAGS is None:
        tags = {}
        try:
            tags[TAG_CODE_VERSION] = importlib_metadata.version("scrm-models")
        except importlib_metadata.PackageNotFoundError:
            pass
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                tags[TAG_GIT_COMMIT] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        _CODE_TAGS = tags
    return dict(_CODE_TAGS)


# --------------------------------------------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------------------------------------------
def _fingerprint_tables(fingerprint: Mapping[str, Any]) -> dict[str, dict]:
    tables = {}
    for name, fp in fingerprint.items():
        info = fp.to_dict() if hasattr(fp, "to_dict") else dict(fp)
        if "sha256" not in info:
            raise ValueError(f"data fingerprint of table {name!r} has no 'sha256' (keys: {sorted(info)})")
        tables[str(name)] = info
    if not tables:
        raise ValueError("data fingerprint is empty: expected at least the 'orders' table")
    return tables


def data_fingerprint(fingerprint: Mapping[str, Any]) -> str:
    """Short sha256 over the tables' sha256 values: equal data gives an equal fingerprint.

    Parameters
    ----------
    fingerprint : mapping
        ``Dataset.fingerprint`` or ``Dataset.fingerprint_dict()``: table name → object/dict with ``sha256``.

    Returns
    -------
    str
        16 hex characters; independent of table order and of file paths.
    """
    tables = _fingerprint_tables(fingerprint)
    joined = "\n".join(f"{name}:{tables[name]['sha256']}" for name in sorted(tables))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def log_dataset_fingerprint(fingerprint: Mapping[str, Any]) -> str:
    """Log the input data's fingerprint on the active run.

    Writes artifact ``data_fingerprint.json`` (table name → ``file``, ``sha256``, ``rows_read``, ``rows_used``,
    ``rows_rejected``, as ``Dataset.fingerprint_dict()``), tag ``scrm.data_fingerprint`` and metrics
    ``data.<table>.rows_read|rows_used|rows_rejected``.

    Parameters
    ----------
    fingerprint : mapping
        ``Dataset.fingerprint`` or ``Dataset.fingerprint_dict()``.

    Returns
    -------
    str
        The short fingerprint (as :func:`data_fingerprint`).
    """
    import mlflow

    active_run_id()
    tables = _fingerprint_tables(fingerprint)
    short = data_fingerprint(tables)
    mlflow.log_dict(_jsonable(tables), "data_fingerprint.json")
    mlflow.set_tag(TAG_FINGERPRINT, short)
    metrics = {}
    for name, info in tables.items():
        for key in ("rows_read", "rows_used", "rows_rejected"):
            if info.get(key) is not None:
                metrics[f"data.{name}.{key}"] = float(info[key])
    if metrics:
        mlflow.log_metrics(metrics)
    return short


def log_feature_list(columns: Iterable[str]) -> None:
    """Log the model's input columns, in order, as artifact ``features.json`` (a JSON list of names)."""
    import mlflow

    active_run_id()
    cols = [str(c) for c in columns]
    if not cols:
        raise ValueError("feature list is empty")
    mlflow.log_dict(cols, "features.json")


def log_figure(fig, name: str) -> str:
    """Log a matplotlib figure as ``plots/<name>.png`` on the active run.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (e.g. from :mod:`training.plots`).
    name : str
        Plot name; the conventional ones are ``roc``, ``calibration``, ``gains``, ``clv_deciles``,
        ``feature_importance``, ``expansion_curve``.

    Returns
    -------
    str
        The artifact path, ``plots/<name>.png``.
    """
    import mlflow

    active_run_id()
    check_name(name, "plot")
    path = f"plots/{name}.png"
    mlflow.log_figure(fig, path)
    return path


def log_json(obj: Any, name: str) -> str:
    """Log a JSON-serialisable object as artifact ``name`` (``.json`` appended when missing).

    numpy scalars/arrays, pandas timestamps and NaN/inf (written as ``null``) are handled.
    """
    import mlflow

    active_run_id()
    path = name if name.endswith(".json") else f"{name}.json"
    mlflow.log_dict(_jsonable(obj), path)
    return path


def _jsonable(obj: Any) -> Any:
    """Convert to plain JSON types; NaN and infinities become ``None`` so the file is strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, pd.Series):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, pd.DataFrame):
        return [_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp | datetime):
        return obj.isoformat()
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


def __getattr__(name: str):
    # Models logged before the wrapper moved to training.pyfunc pickled `training.tracking.EstimatorPyfunc`;
    # resolving the name here keeps them loadable.
    if name == "EstimatorPyfunc":
        from training import pyfunc

        return pyfunc.EstimatorPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
