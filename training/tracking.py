"""MLflow tracking and model registry: where runs go, what every run logs, and the champion alias.

Every training, backtest and lookalike run goes through this module so the conventions in
``docs/architecture.md`` ("MLflow conventions") hold in one place:

- the tracking URI (``MLFLOW_TRACKING_URI`` or the embedded ``sqlite:///<cwd>/mlruns/mlflow.db``) and the
  artifact root (``SCRM_ARTIFACT_ROOT`` or ``<cwd>/mlruns/artifacts``) — set only by :func:`configure`,
  never at import time;
- runs (:func:`start_run`), the data fingerprint, the feature list, plots, JSON artifacts;
- models: our sklearn-style estimators logged as MLflow pyfunc models (:func:`log_model`) and loaded back as
  the original Python objects (:func:`load_model`);
- the registry: :func:`promotion_gate` moves alias ``champion`` only to a strictly better version (otherwise
  the new version becomes ``challenger``), :func:`promote` and :func:`rollback` move it by hand, and every move
  is recorded in the registered-model tag ``champion_history``.

Code needed to unpickle a model (``features``, ``training``) is *not* copied into the model artifact: it is
imported from the installed ``scrm-models`` package. Copying it (``code_paths``) would make MLflow put an old
copy of ``training`` ahead of the installed one and drop the already-imported modules when a model is loaded
into a running service. The package version and git commit that logged a model are recorded in its
metadata and in the run's tags (``scrm.code_version``, ``scrm.git_commit``) instead.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# mlflow is heavy to import; it is imported lazily inside functions so `import training.tracking` is cheap
# and sets no state.

EXPERIMENTS = ("churn", "clv", "lookalike", "backtest")
REGISTERED_MODELS = ("churn", "clv")
CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_KIND = "scrm.kind"
TAG_FINGERPRINT = "scrm.data_fingerprint"
TAG_AS_OF = "scrm.as_of"
TAG_GATE = "scrm.gate_decision"
TAG_ERROR = "scrm.error"
TAG_CODE_VERSION = "scrm.code_version"
TAG_GIT_COMMIT = "scrm.git_commit"

GATE_PROMOTED = "promoted"
GATE_CHALLENGER = "challenger"
GATE_FIRST_CHAMPION = "first_champion"

HISTORY_TAG = "champion_history"
_HISTORY_MAX = 100  # entries kept in the registered-model tag (tag values are length-limited)

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
    return uri


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

    _check_name(name, "experiment")
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


def _check_name(name: str, what: str) -> None:
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
    An exception inside the block marks the run ``FAILED`` (``KILLED`` for ``KeyboardInterrupt``), records the
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
    all_tags.update(_code_tags())
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


def _active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: call this inside `with tracking.start_run(...)`")
    return run.info.run_id


_CODE_TAGS: dict[str, str] | None = None


def _code_tags() -> dict[str, str]:
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

    _active_run_id()
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

    _active_run_id()
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

    _active_run_id()
    _check_name(name, "plot")
    path = f"plots/{name}.png"
    mlflow.log_figure(fig, path)
    return path


def log_json(obj: Any, name: str) -> str:
    """Log a JSON-serialisable object as artifact ``name`` (``.json`` appended when missing).

    numpy scalars/arrays, pandas timestamps and NaN/inf (written as ``null``) are handled.
    """
    import mlflow

    _active_run_id()
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


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------
def _pyfunc_class():
    """The PythonModel wrapper class (defined lazily: mlflow is only imported when a model is logged)."""
    global _EstimatorPyfunc
    if _EstimatorPyfunc is None:
        import mlflow.pyfunc

        EstimatorPyfunc = _define_pyfunc_class(mlflow.pyfunc.PythonModel)
        EstimatorPyfunc.__module__ = __name__
        EstimatorPyfunc.__qualname__ = "EstimatorPyfunc"
        _EstimatorPyfunc = EstimatorPyfunc
        globals()["EstimatorPyfunc"] = EstimatorPyfunc
    return _EstimatorPyfunc


def _define_pyfunc_class(base):
    class EstimatorPyfunc(base):
        """MLflow pyfunc around one of our sklearn-style estimators.

        ``predict`` calls the estimator's ``predict_frame`` when it has one, else ``predict``, and always
        returns a DataFrame (a 1-D result becomes column ``prediction``).
        """

        def __init__(self, estimator):
            self.estimator = estimator

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return _predict_frame(self.estimator, model_input)

    return EstimatorPyfunc


_EstimatorPyfunc = None


def __getattr__(name: str):
    # Lets pickle/cloudpickle resolve `training.tracking.EstimatorPyfunc` by reference at load time.
    if name == "EstimatorPyfunc":
        return _pyfunc_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _predict_frame(estimator, frame: pd.DataFrame) -> pd.DataFrame:
    out = estimator.predict_frame(frame) if hasattr(estimator, "predict_frame") else estimator.predict(frame)
    if isinstance(out, pd.DataFrame):
        return out
    if isinstance(out, pd.Series):
        return out.rename(out.name if out.name is not None else "prediction").to_frame()
    arr = np.asarray(out)
    index = frame.index if len(arr) == len(frame) else None
    if arr.ndim == 1:
        return pd.DataFrame({"prediction": arr}, index=index)
    if arr.ndim == 2:
        return pd.DataFrame(arr, columns=[f"prediction_{i}" for i in range(arr.shape[1])], index=index)
    raise TypeError(f"{type(estimator).__name__}.predict returned an array of shape {arr.shape}")


def _schema(frame: pd.DataFrame):
    """MLflow column schema with the frame's own dtypes (what the feature pipeline produces at scoring time).

    Built directly rather than with ``infer_signature`` so MLflow does not warn about integer columns: the
    pipeline's integer columns never carry NaN. Unusual dtypes fall back to MLflow's inference.
    """
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, DataType, Schema

    specs = []
    for col in frame.columns:
        dtype = frame[col].dtype
        if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.BooleanDtype):
            t = DataType.boolean
        elif dtype == np.int64:
            t = DataType.long
        elif isinstance(dtype, np.dtype) and dtype.kind == "i" and dtype.itemsize <= 4:
            t = DataType.integer
        elif dtype == np.float64:
            t = DataType.double
        elif dtype == np.float32:
            t = DataType.float
        elif isinstance(dtype, np.dtype) and dtype.kind == "M":
            t = DataType.datetime
        elif isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype):
            t = DataType.string
        else:
            return infer_signature(frame).inputs
        specs.append(ColSpec(t, str(col)))
    return Schema(specs)


def _pip_requirements() -> list[str]:
    """Pinned versions of the libraries a logged model needs (skips MLflow's slow requirement inference)."""
    reqs = []
    for dist in ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "lifetimes", "pyarrow"):
        try:
            reqs.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            continue
    return reqs


def log_model(
    model,
    *,
    name: str = "model",
    input_example: pd.DataFrame,
    registered_model_name: str | None = None,
):
    """Log a fitted sklearn-style estimator as an MLflow pyfunc model on the active run.

    Parameters
    ----------
    model : object
        Fitted estimator with ``predict_frame(df) -> DataFrame`` or ``predict(df)``; pickled with cloudpickle
        (classes from ``features``/``training`` are pickled by reference and imported from the installed
        package at load time).
    name : str, default "model"
        Artifact name of the model within the run.
    input_example : DataFrame
        A few rows of real model input; the first 5 are stored as the input example and, with the model's
        output on them, define the signature (column names and dtypes as given: pass the frame the feature
        pipeline produces, so scoring-time frames match it).
    registered_model_name : str, optional
        When given (``"churn"``, ``"clv"``), a new version of this registered model is created. No alias is
        moved: call :func:`promotion_gate` once the run's validation metric is known.

    Returns
    -------
    mlflow.models.model.ModelInfo
        ``model_uri``, ``run_id``, ``registered_model_version`` (when registered), ...
    """
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    run_id = _active_run_id()
    _check_name(name, "model")
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise ValueError("input_example must be a non-empty DataFrame of model input rows")
    if registered_model_name is not None:
        _check_name(registered_model_name, "registered model")
    example = input_example.head(5).reset_index(drop=True)
    wrapper = _pyfunc_class()(model)
    output = wrapper.predict(None, example)
    metadata = dict(_code_tags())
    metadata["estimator_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    signature = ModelSignature(inputs=_schema(example), outputs=_schema(output))
    with _logger_level("mlflow.pyfunc", logging.ERROR), warnings.catch_warnings():
        # MLflow warns that python_model is pickled (on purpose here) and trips a pandas-4 deprecation
        # while saving the input example; neither is actionable for us.
        warnings.filterwarnings("ignore", message="Operation with range is deprecated")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=wrapper,
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            metadata=metadata,
        )
    if registered_model_name is not None:
        mv = _register(registered_model_name, info, run_id)
        info.registered_model_version = int(mv.version)
    return info


def _register(name: str, info, run_id: str):
    """Create a new version of registered model ``name`` from a logged model (quietly, no alias moved)."""
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name, description=_MODEL_DESCRIPTIONS.get(name))
        except MlflowException:
            c.get_registered_model(name)  # created concurrently; re-raise if it really is missing
    return c.create_model_version(
        name, source=f"models:/{info.model_id}", run_id=run_id, model_id=info.model_id
    )


_MODEL_DESCRIPTIONS = {
    "churn": "P(no paid order in the next horizon_days) per person; alias champion serves production.",
    "clv": "Expected spend in the next horizon_days per person with p10/p90; alias champion serves production.",
}


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version loaded back: our original estimator plus the MLflow pyfunc around it."""

    name: str
    version: int
    run_id: str
    estimator: Any
    pyfunc: Any
    alias: str | None = None


def load_model(name: str, alias: str | None = CHAMPION, *, version: int | str | None = None) -> LoadedModel:
    """Load a registered model by alias (default ``champion``) or by explicit ``version``.

    Parameters
    ----------
    name : str
        Registered model name (``churn``, ``clv``).
    alias : str or None, default "champion"
        Alias to resolve; ignored when ``version`` is given.
    version : int or str, optional
        Explicit version number.

    Returns
    -------
    LoadedModel
        ``estimator`` is the original Python object that was logged (via ``unwrap_python_model()``).

    Raises
    ------
    LookupError
        When the registered model, alias or version does not exist.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        if version is not None:
            mv = c.get_model_version(name, str(version))
            alias = None
        else:
            if not alias:
                raise ValueError("give an alias or a version")
            mv = c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise LookupError(
            f"registered model {name!r} has no {what} in {tracking_uri()}: train one with `scrm train` "
            f"(MLflow said: {exc.message})"
        ) from exc
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    wrapper = pyfunc.unwrap_python_model()
    estimator = getattr(wrapper, "estimator", wrapper)
    return LoadedModel(
        name=name, version=int(mv.version), run_id=mv.run_id, estimator=estimator, pyfunc=pyfunc, alias=alias
    )


# --------------------------------------------------------------------------------------------------------------
# Registry: champion / challenger
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateDecision:
    """Outcome of :func:`promotion_gate`."""

    name: str
    version: int
    decision: str  # promoted | challenger | first_champion
    metric: str
    value: float
    higher_is_better: bool
    champion_version: int | None  # the champion compared against (None for first_champion)
    champion_value: float | None
    reason: str

    @property
    def promoted(self) -> bool:
        """True when the new version is now the champion."""
        return self.decision in (GATE_PROMOTED, GATE_FIRST_CHAMPION)


@dataclass(frozen=True)
class AliasChange:
    """A hand move of ``champion`` (:func:`promote`, :func:`rollback`)."""

    name: str
    version: int
    previous_version: int | None
    action: str  # promote | rollback
    by: str
    at: str


def _who() -> str:
    user = os.environ.get("SCRM_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alias_version(c, name: str, alias: str):
    """The model version behind ``alias``, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_version(name: str) -> int | None:
    """The version number holding alias ``champion``, or None when there is none (or no such model)."""
    mv = _alias_version(client(), name, CHAMPION)
    return int(mv.version) if mv is not None else None


def challenger_version(name: str) -> int | None:
    """The version number holding alias ``challenger``, or None."""
    mv = _alias_version(client(), name, CHALLENGER)
    return int(mv.version) if mv is not None else None


def champion_history(name: str) -> list[dict]:
    """Every recorded move of ``champion``: dicts with ``version``, ``action``, ``by``, ``at`` (oldest first)."""
    c = client()
    try:
        rm = c.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - MlflowException: not found
        raise LookupError(f"no registered model {name!r}") from exc
    raw = rm.tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def _get_version(c, name: str, version: int | str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version(name, str(int(version)))
    except (MlflowException, ValueError) as exc:
        raise LookupError(f"registered model {name!r} has no version {version!r}") from exc


def _set_champion(c, name: str, version: int, *, action: str) -> tuple[str, str]:
    """Move ``champion`` to ``version`` and record who/when on the version and in the history tag."""
    by, at = _who(), _now()
    c.set_registered_model_alias(name, CHAMPION, str(version))
    challenger = _alias_version(c, name, CHALLENGER)
    if challenger is not None and int(challenger.version) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    c.set_model_version_tag(name, str(version), "champion_set_by", by)
    c.set_model_version_tag(name, str(version), "champion_set_at", at)
    c.set_model_version_tag(name, str(version), "champion_set_action", action)
    history = champion_history(name)
    history.append({"version": int(version), "action": action, "by": by, "at": at})
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-_HISTORY_MAX:]))
    c.set_registered_model_tag(name, "champion_set_by", by)
    c.set_registered_model_tag(name, "champion_set_at", at)
    return by, at


def promotion_gate(
    name: str,
    version: int | str,
    *,
    metric: str,
    value: float,
    higher_is_better: bool = True,
) -> GateDecision:
    """Compare a new registered version with the current ``champion`` and move the aliases.

    The champion's figure is read from its run's metric ``metric``. The new version becomes ``champion``
    only when it is strictly better (or when there is no champion yet: ``first_champion``); otherwise it
    becomes ``challenger`` and ``champion`` is untouched. A NaN ``value`` never wins; a champion run without
    the metric is kept (the new version cannot be shown to be better).

    The decision and both figures are logged on the new version's run: tag ``scrm.gate_decision``, tags
    ``scrm.gate_metric`` / ``scrm.gate_champion_version``, metrics ``gate.new_value`` and
    ``gate.champion_value``; and on the model version (tag ``gate_decision``).

    Parameters
    ----------
    name : str
        Registered model name.
    version : int or str
        The new version (e.g. ``model_info.registered_model_version``).
    metric : str
        Validation metric key on the runs, e.g. ``"val.auc"``.
    value : float
        The new version's value of ``metric``.
    higher_is_better : bool, default True
        Direction of ``metric`` (e.g. ``False`` for ``val.brier``).

    Returns
    -------
    GateDecision

    Raises
    ------
    LookupError
        Unknown model or version.
    ValueError
        When the new version's run ended ``FAILED``/``KILLED``: a failed run is never gated.
    """
    c = client()
    new = _get_version(c, name, version)
    version = int(new.version)
    run = c.get_run(new.run_id) if new.run_id else None
    if run is not None and run.info.status in ("FAILED", "KILLED"):
        raise ValueError(
            f"{name} version {version} comes from run {new.run_id} which ended {run.info.status}; "
            "it is not eligible for promotion"
        )
    value = float(value)
    current = _alias_version(c, name, CHAMPION)
    champ_version: int | None = None
    champ_value: float | None = None
    if current is None or int(current.version) == version:
        decision, reason = GATE_FIRST_CHAMPION, "no champion yet"
        if current is not None:
            reason = "already the champion"
            decision = GATE_PROMOTED
    else:
        champ_version = int(current.version)
        champ_run = c.get_run(current.run_id) if current.run_id else None
        raw = champ_run.data.metrics.get(metric) if champ_run is not None else None
        champ_value = float(raw) if raw is not None else None
        if math.isnan(value):
            decision, reason = GATE_CHALLENGER, f"new {metric} is NaN"
        elif champ_value is None or math.isnan(champ_value):
            decision, reason = GATE_CHALLENGER, f"champion v{champ_version} has no {metric} to compare with"
        else:
            better = value > champ_value if higher_is_better else value < champ_value
            word = "higher" if higher_is_better else "lower"
            if better:
                decision = GATE_PROMOTED
                reason = f"{metric} {value:.6g} vs champion {champ_value:.6g} ({word} is better)"
            else:
                decision = GATE_CHALLENGER
                reason = f"{metric} {value:.6g} not better than champion {champ_value:.6g} ({word} is better)"

    if decision in (GATE_PROMOTED, GATE_FIRST_CHAMPION):
        if current is None or int(current.version) != version:
            _set_champion(c, name, version, action="gate")
    else:
        c.set_registered_model_alias(name, CHALLENGER, str(version))

    c.set_model_version_tag(name, str(version), "gate_decision", decision)
    c.set_model_version_tag(name, str(version), "gate_reason", reason[:500])
    if new.run_id:
        c.set_tag(new.run_id, TAG_GATE, decision)
        c.set_tag(new.run_id, "scrm.gate_metric", metric)
        c.set_tag(new.run_id, "scrm.gate_higher_is_better", str(higher_is_better).lower())
        c.set_tag(new.run_id, "scrm.gate_reason", reason[:500])
        if champ_version is not None:
            c.set_tag(new.run_id, "scrm.gate_champion_version", str(champ_version))
        if not math.isnan(value):
            c.log_metric(new.run_id, "gate.new_value", value)
        if champ_value is not None and not math.isnan(champ_value):
            c.log_metric(new.run_id, "gate.champion_value", champ_value)
    return GateDecision(
        name=name,
        version=version,
        decision=decision,
        metric=metric,
        value=value,
        higher_is_better=higher_is_better,
        champion_version=champ_version,
        champion_value=champ_value,
        reason=reason,
    )


def promote(name: str, version: int | str) -> AliasChange:
    """Make ``version`` the ``champion`` by hand (``scrm promote``), recording who and when.

    Raises
    ------
    LookupError
        Unknown model or version.
    """
    c = client()
    mv = _get_version(c, name, version)
    previous = champion_version(name)
    by, at = _set_champion(c, name, int(mv.version), action="promote")
    return AliasChange(name, int(mv.version), previous, "promote", by, at)


def _champion_stack(history: list[dict]) -> list[int]:
    """Replay the history: gate/promote push a champion, rollback pops back to the previous one."""
    stack: list[int] = []
    for entry in history:
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != int(entry["version"]):
                stack.append(int(entry["version"]))
        else:
            stack.append(int(entry["version"]))
    return stack


def rollback(name: str) -> AliasChange:
    """Move ``champion`` back to the version that was champion before the current one (``scrm rollback``).

    Repeated rollbacks keep going back in time (v1 → v2 → v3, rollback → v2, rollback → v1).

    Raises
    ------
    LookupError
        Unknown model, or no earlier champion to go back to.
    """
    c = client()
    current = champion_version(name)
    if current is None:
        raise LookupError(f"registered model {name!r} has no champion to roll back")
    stack = _champion_stack(champion_history(name))
    if stack and stack[-1] != current:  # alias moved outside this module: treat the current one as on top
        stack.append(current)
    earlier = [v for v in stack[:-1] if v != current]
    if not earlier:
        raise LookupError(f"registered model {name!r}: no earlier champion than version {current} to roll back to")
    target = earlier[-1]
    _get_version(c, name, target)
    by, at = _set_champion(c, name, target, action="rollback")
    return AliasChange(name, target, current, "rollback", by, at)
