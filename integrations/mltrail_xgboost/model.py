"""Save, log and load xgboost models in MLflow's `xgboost` flavour.

A `Booster` or an xgboost scikit-learn wrapper (`XGBRegressor`, `XGBClassifier`,
...) is written with xgboost's own `save_model` in the UBJSON format, straight
to disk; MLmodel records the class so `mlflow.xgboost.load_model` and mltrail's
`load_model` give back the same kind of object. No pickle is involved, but the
class named in MLmodel is imported on load: only names under `xgboost.` are.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltrail.autologging import InvalidParameterError, models

FLAVOR_NAME = "xgboost"
MODEL_FORMATS = ("ubj", "json")
DEFAULT_FORMAT = "ubj"

__all__ = [
    "FLAVOR_NAME",
    "infer_signature",
    "load_model",
    "load_pyfunc",
    "log_model",
    "save_model",
]

# xgboost's DMatrix feature types, as MLflow column types; anything else gets no signature.
_DMATRIX_TYPES = {"float": "double", "q": "double", "int": "long", "i": "boolean"}


def _class_path(xgb_model: Any) -> str:
    cls = type(xgb_model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_model(xgb_model: Any) -> None:
    if not _class_path(xgb_model).startswith("xgboost.") or not hasattr(xgb_model, "save_model"):
        raise InvalidParameterError(
            f"Expected an xgboost Booster or scikit-learn wrapper, got {_class_path(xgb_model)}",
            key="xgb_model",
        )


def infer_signature(data: Any, output: Any = None) -> dict[str, Any] | None:
    """MLflow's signature dict for training data, including an xgboost `DMatrix`.

    A DMatrix gives column names and types when it has feature names; other
    inputs are handled by `mltrail.models.infer_signature`.
    """
    import xgboost

    if not isinstance(data, xgboost.DMatrix):
        return models.infer_signature(data, output)
    names, types = data.feature_names, data.feature_types
    if not names:
        return None
    if types is None:
        types = ["float"] * len(names)
    if any(t not in _DMATRIX_TYPES for t in types):
        return None  # categorical columns: no MLflow type that enforces them faithfully
    inputs = [
        {"type": _DMATRIX_TYPES[t], "name": n, "required": True}
        for n, t in zip(names, types, strict=True)
    ]
    return {"inputs": json.dumps(inputs), "outputs": None, "params": None}


def _spec(xgb_model: Any, model_format: str) -> models.ModelSpec:
    import xgboost

    _check_model(xgb_model)
    if model_format not in MODEL_FORMATS:
        raise InvalidParameterError(
            f"Unknown model_format {model_format!r}; use one of {', '.join(MODEL_FORMATS)}",
            key="model_format",
        )
    data_file = f"model.{model_format}"

    def write(folder: Path) -> None:
        xgb_model.save_model(str(folder / data_file))  # xgboost writes the file itself

    flavors = {
        models.PYFUNC_FLAVOR: models.pyfunc_flavor("mlflow.xgboost", data=data_file),
        FLAVOR_NAME: {
            "data": data_file,
            "model_class": _class_path(xgb_model),
            "model_format": model_format,
            "xgb_version": xgboost.__version__,
            "code": None,
        },
    }
    distributions = ["xgboost", "numpy", "scipy"]
    if not isinstance(xgb_model, xgboost.Booster):
        distributions.append("scikit-learn")
    return models.ModelSpec(flavors, write, models.pin(distributions))


def _signature(signature: Any, input_example_data: Any) -> Any:
    if signature is None and input_example_data is not None:
        return infer_signature(input_example_data)
    return signature


def save_model(
    xgb_model: Any,
    path: str | os.PathLike[str],
    *,
    model_format: str = DEFAULT_FORMAT,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    input_example_data: Any = None,
) -> None:
    """Write a Booster or xgboost scikit-learn wrapper to a new folder `path`.

    Args:
        xgb_model: the trained Booster or wrapper.
        path: the folder to create; it must not exist yet.
        model_format: "ubj" (default, compact) or "json".
        signature: a dict from `infer_signature`.
        input_example: a few input rows, saved with the model.
        pip_requirements: replace the pinned requirements written to requirements.txt.
        extra_pip_requirements: add lines to them.
        metadata: free-form dict stored in MLmodel.
        input_example_data: training input (DataFrame, array or DMatrix) used only
            to infer the signature; none of its values is stored.
    """
    models.save_model(
        path,
        _spec(xgb_model, model_format),
        signature=_signature(signature, input_example_data),
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def log_model(
    xgb_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    model_format: str = DEFAULT_FORMAT,
    signature: Any = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    input_example_data: Any = None,
) -> models.ModelInfo:
    """Log a Booster or wrapper as a model folder of the active run (or of `run_id`).

    Args:
        xgb_model: the trained Booster or wrapper.
        artifact_path: the folder inside the run's artifacts (default "model");
            `name` is MLflow 3's name for the same thing.
        registered_model_name: also register it under this name.
        run_id: log into this run instead of the active one.
        model_format, signature, input_example, pip_requirements,
        extra_pip_requirements, metadata, input_example_data: as for `save_model`.

    Returns:
        A ModelInfo; `model_uri` (`runs:/<run_id>/<path>`) loads it back.
    """
    return models.log_model(
        artifact_path or name,
        _spec(xgb_model, model_format),
        signature=_signature(signature, input_example_data),
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        registered_model_name=registered_model_name,
        run_id=run_id,
    )


def _model_class(class_path: str) -> type:
    module_name, _, class_name = class_path.rpartition(".")
    if not class_path.startswith("xgboost.") or not module_name:
        raise InvalidParameterError(
            f"MLmodel names the class {class_path!r}; mltrail only loads xgboost classes",
            key="model_class",
        )
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidParameterError(
            f"Cannot load the model class {class_path!r} with this xgboost: {exc}",
            key="model_class",
        ) from exc


def load_model(model_uri: str | os.PathLike[str], dst_path: str | None = None) -> Any:
    """Load an xgboost model saved in MLflow's layout (by mltrail or by MLflow).

    Args:
        model_uri: `runs:/<run_id>/<path>`, `models:/<name>/<version>`,
            `models:/<name>@<alias>`, `models:/<name>/<stage>`, or a local folder.
        dst_path: download a remote model into this existing folder.

    Returns:
        A `Booster`, or the scikit-learn wrapper class the model was saved from.
    """
    folder = models.download_model(model_uri, dst_path)
    config = models.flavor_config(folder, FLAVOR_NAME)
    model = _model_class(config.get("model_class", "xgboost.core.Booster"))()
    model.load_model(str(folder / config.get("data", "model.xgb")))
    return model


class _Predictor:
    """`predict(X)` for either kind of model: a Booster needs its input as a DMatrix."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import xgboost

        if isinstance(self.model, xgboost.Booster):
            if not isinstance(data, xgboost.DMatrix):
                data = xgboost.DMatrix(data)
            return self.model.predict(data, **(params or {}))
        return self.model.predict(data, **(params or {}))

    def get_raw_model(self) -> Any:
        return self.model


def load_pyfunc(model_uri: str | os.PathLike[str]) -> _Predictor:
    """The model behind `mltrail.pyfunc.load_model`: an object whose `predict(X)` takes
    a DataFrame, an array or a DMatrix."""
    return _Predictor(load_model(model_uri))
