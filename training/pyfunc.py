"""The MLflow pyfunc wrapper around our sklearn-style estimators, and logging a fitted one as a model.

:func:`log_model` logs an estimator (churn, CLV, lookalike) on the active run as an MLflow pyfunc model whose
``predict`` calls the estimator's ``predict_frame``, with a signature built from the scoring frame's own dtypes;
:func:`training.registry.load_model` loads it back as the original Python object.

Code needed to unpickle a model (``features``, ``training``) is *not* copied into the model artifact: it is
imported from the installed ``scrm-models`` package. Copying it (``code_paths``) would make MLflow put an old
copy of ``training`` ahead of the installed one and drop the already-imported modules when a model is loaded
into a running service. The package version and git commit that logged a model are recorded in its
metadata and in the run's tags (``scrm.code_version``, ``scrm.git_commit``) instead. The wrapper class is
pickled by reference as ``training.pyfunc.EstimatorPyfunc``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from importlib import metadata as importlib_metadata

import numpy as np
import pandas as pd

from training.registry import register_version
from training.tracking import active_run_id, check_name, code_tags

# mlflow is heavy to import; the wrapper class is defined on first use.


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
    # Lets pickle/cloudpickle resolve `training.pyfunc.EstimatorPyfunc` by reference at load time.
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

    Nullable boolean columns (``marketing_opt_out``: empty when consent is unknown, e.g. an orders-only brand)
    are left out: MLflow cannot enforce a boolean column holding NA ("cannot convert float NaN to bool"), and they
    are never model inputs (``features.spec``: ``model_input=False``); enforcement ignores columns outside the
    signature.
    """
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, DataType, Schema

    frame = frame[[c for c in frame.columns if not isinstance(frame[c].dtype, pd.BooleanDtype)]]
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
        moved: call :func:`training.registry.promotion_gate` once the run's validation metric is known.

    Returns
    -------
    mlflow.models.model.ModelInfo
        ``model_uri``, ``run_id``, ``registered_model_version`` (when registered), ...
    """
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    run_id = active_run_id()
    check_name(name, "model")
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise ValueError("input_example must be a non-empty DataFrame of model input rows")
    if registered_model_name is not None:
        check_name(registered_model_name, "registered model")
    example = input_example.head(5).reset_index(drop=True)
    wrapper = _pyfunc_class()(model)
    output = wrapper.predict(None, example)
    metadata = dict(code_tags())
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
        mv = register_version(registered_model_name, info, run_id)
        info.registered_model_version = int(mv.version)
    return info


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)
