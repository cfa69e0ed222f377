"""Save, log and load scikit-learn models in MLflow's `sklearn` flavour.

The estimator is pickled, with cloudpickle when it is installed (it also handles
lambdas and classes defined in `__main__`) and the standard `pickle` otherwise;
MLmodel's `serialization_format` says which, so `mlflow.sklearn.load_model` and
`mlflow.pyfunc.load_model` read the folder too.

Security: unpickling runs code chosen by whoever wrote the file. Only load
models you trust (your own runs, your team's registry).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from mltrail.autologging import InvalidParameterError, models

FLAVOR_NAME = "sklearn"
MODEL_FILE = "model.pkl"
SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_CLOUDPICKLE = "cloudpickle"
SUPPORTED_SERIALIZATION_FORMATS = (SERIALIZATION_FORMAT_PICKLE, SERIALIZATION_FORMAT_CLOUDPICKLE)

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "load_model",
    "log_model",
    "save_model",
]


def _default_format() -> str:
    if importlib.util.find_spec("cloudpickle") is not None:
        return SERIALIZATION_FORMAT_CLOUDPICKLE
    return SERIALIZATION_FORMAT_PICKLE


def _pickler(serialization_format: str) -> ModuleType:
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        import cloudpickle

        return cloudpickle
    return pickle


def _check_format(serialization_format: str | None) -> str:
    chosen = serialization_format or _default_format()
    if chosen not in SUPPORTED_SERIALIZATION_FORMATS:
        raise InvalidParameterError(
            f"Unknown serialization_format {chosen!r}; use one of "
            f"{', '.join(SUPPORTED_SERIALIZATION_FORMATS)}",
            key="serialization_format",
        )
    if (
        chosen == SERIALIZATION_FORMAT_CLOUDPICKLE
        and importlib.util.find_spec("cloudpickle") is None
    ):
        raise InvalidParameterError(
            "serialization_format='cloudpickle' needs the cloudpickle package: "
            "pip install cloudpickle",
            key="serialization_format",
        )
    return chosen


def _requirements(sk_model: Any, serialization_format: str) -> list[str]:
    distributions = ["scikit-learn", "numpy", "scipy"]
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        distributions.append("cloudpickle")
    # An estimator from another package (an xgboost or lightgbm wrapper) needs that package.
    top = type(sk_model).__module__.split(".", 1)[0]
    modules = [] if top in ("sklearn", "__main__", "builtins") else [top]
    return models.pin(distributions, modules)


def _spec(sk_model: Any, serialization_format: str | None) -> models.ModelSpec:
    import sklearn

    fmt = _check_format(serialization_format)
    pickler = _pickler(fmt)

    def write(folder: Path) -> None:
        with open(folder / MODEL_FILE, "wb") as handle:  # streams: no bytes copy in memory
            pickler.dump(sk_model, handle)

    flavors = {
        models.PYFUNC_FLAVOR: models.pyfunc_flavor(
            "mlflow.sklearn", model_path=MODEL_FILE, predict_fn="predict"
        ),
        FLAVOR_NAME: {
            "pickled_model": MODEL_FILE,
            "serialization_format": fmt,
            "sklearn_version": sklearn.__version__,
            "code": None,
        },
    }
    return models.ModelSpec(flavors, write, _requirements(sk_model, fmt))


def _signature(signature: Any, input_example_data: Any) -> Any:
    if signature is None and input_example_data is not None:
        return models.infer_signature(input_example_data)
    return signature


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    input_example_data: Any = None,
) -> None:
    """Write a fitted estimator to a new folder `path` in MLflow's layout.

    Args:
        sk_model: the fitted estimator (any picklable object with `predict`).
        path: the folder to create; it must not exist yet.
        serialization_format: "cloudpickle" (default when installed) or "pickle".
        signature: a dict from `mltrail.models.infer_signature`.
        input_example: a few input rows, saved with the model.
        pip_requirements: replace the pinned requirements written to requirements.txt.
        extra_pip_requirements: add lines to them.
        metadata: free-form dict stored in MLmodel.
        input_example_data: training input used only to infer the signature
            (its dtypes and shape; none of its values is stored).

    Raises:
        ModelSaveError: the estimator cannot be pickled; nothing is left at `path`.
    """
    models.save_model(
        path,
        _spec(sk_model, serialization_format),
        signature=_signature(signature, input_example_data),
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    serialization_format: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    input_example_data: Any = None,
) -> models.ModelInfo:
    """Log a fitted estimator as a model folder of the active run (or of `run_id`).

    Args:
        sk_model: the fitted estimator.
        artifact_path: the folder inside the run's artifacts (default "model");
            `name` is MLflow 3's name for the same thing.
        registered_model_name: also register it under this name.
        run_id: log into this run instead of the active one.
        serialization_format, signature, input_example, pip_requirements,
        extra_pip_requirements, metadata, input_example_data: as for `save_model`.

    Returns:
        A ModelInfo; `model_uri` (`runs:/<run_id>/<path>`) loads it back.

    Raises:
        ModelSaveError: the estimator cannot be pickled; nothing was logged.
    """
    return models.log_model(
        artifact_path or name,
        _spec(sk_model, serialization_format),
        signature=_signature(signature, input_example_data),
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        registered_model_name=registered_model_name,
        run_id=run_id,
    )


def load_model(model_uri: str | os.PathLike[str], dst_path: str | None = None) -> Any:
    """Load a scikit-learn model saved in MLflow's layout (by mltrail or by MLflow).

    Unpickling executes code from the file: load only models you trust.

    Args:
        model_uri: `runs:/<run_id>/<path>`, `models:/<name>/<version>`,
            `models:/<name>@<alias>`, `models:/<name>/<stage>`, or a local folder.
        dst_path: download a remote model into this existing folder.

    Returns:
        The estimator.
    """
    folder = models.download_model(model_uri, dst_path)
    config = models.flavor_config(folder, FLAVOR_NAME)
    fmt = config.get("serialization_format", SERIALIZATION_FORMAT_PICKLE)
    if fmt not in SUPPORTED_SERIALIZATION_FORMATS:
        raise InvalidParameterError(
            f"The model at {str(folder)!r} is serialized as {fmt!r}; mltrail reads "
            f"{', '.join(SUPPORTED_SERIALIZATION_FORMATS)}",
            key="serialization_format",
        )
    with open(folder / config.get("pickled_model", MODEL_FILE), "rb") as handle:
        return _pickler(fmt).load(handle)
