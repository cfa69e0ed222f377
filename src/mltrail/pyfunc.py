"""`mltrail.pyfunc.load_model(uri).predict(X)`: one way to use a model of any flavour.

The flavours in the model's MLmodel file pick the integration that loads it:
the `python_function` loader (`mlflow.sklearn` -> the integration registered
as `sklearn`), then each other flavour name. An integration provides
`load_model(uri)`, returning an object with `predict`, and may provide
`load_pyfunc(uri)` when its raw model needs adapting (an xgboost Booster
predicts on a DMatrix, not a DataFrame).

Loading a model may execute code (pickles do): load only models you trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import models, plugins
from .exceptions import MltrailError, NotFoundError

__all__ = ["FLAVOR_NAME", "PyFuncModel", "load_model"]

FLAVOR_NAME = models.PYFUNC_FLAVOR
_LOADER_PREFIXES = ("mlflow.", "mltrail.", "mltrail_")


class PyFuncModel:
    """A loaded model with a framework-independent `predict`.

    Attributes:
        metadata: the model's MLmodel content.
        path: the local folder it was loaded from.
        flavor: the flavour whose integration loaded it.
    """

    def __init__(self, impl: Any, metadata: dict[str, Any], path: Path, flavor: str) -> None:
        self._impl = impl
        self.metadata = metadata
        self.path = path
        self.flavor = flavor

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predictions of the underlying model for a DataFrame, array or sparse matrix."""
        if params:
            return self._impl.predict(data, params=params)
        return self._impl.predict(data)

    def get_raw_model(self) -> Any:
        """The framework's own model object (an estimator, a Booster, ...)."""
        getter = getattr(self._impl, "get_raw_model", None)
        return getter() if callable(getter) else self._impl

    def __repr__(self) -> str:
        run_id = self.metadata.get("run_id")
        origin = f"run {run_id}" if run_id else str(self.path)
        return f"<PyFuncModel: flavor={self.flavor!r}, from {origin}>"


def _candidates(flavors: dict[str, Any]) -> list[str]:
    names: list[str] = []
    loader = str(flavors.get(FLAVOR_NAME, {}).get("loader_module", ""))
    for prefix in _LOADER_PREFIXES:
        if loader.startswith(prefix):
            names.append(loader[len(prefix) :].split(".", 1)[0])
    names.extend(name for name in flavors if name != FLAVOR_NAME)
    return list(dict.fromkeys(n for n in names if n))


def load_model(model_uri: str | os.PathLike[str], dst_path: str | None = None) -> PyFuncModel:
    """Load a model of any installed flavour behind one `predict` method.

    Loading may execute code from the model's files (a pickled estimator runs
    code as it is unpickled): load only models you trust.

    Args:
        model_uri: `runs:/<run_id>/<path>`, `models:/<name>/<version>`,
            `models:/<name>@<alias>`, `models:/<name>/<stage>`, or a local folder.
        dst_path: download a remote model into this existing folder.

    Raises:
        NotFoundError: the URI names nothing, or no installed integration reads
            any of the model's flavours.
    """
    folder = models.download_model(model_uri, dst_path)
    mlmodel = models.read_mlmodel(folder)
    flavors = mlmodel["flavors"]
    if FLAVOR_NAME not in flavors:
        raise MltrailError(
            f"The model at {os.fspath(model_uri)!r} has no {FLAVOR_NAME} flavour, so it has "
            f"no generic predict; load it with its flavour's load_model "
            f"(flavours: {', '.join(sorted(flavors))})",
            error_code="INVALID_PARAMETER_VALUE",
        )
    for name in _candidates(flavors):
        integration = plugins.load(name)
        if integration is None:
            continue
        loader = getattr(integration, "load_pyfunc", None) or getattr(
            integration, "load_model", None
        )
        if loader is None:
            continue
        return PyFuncModel(loader(str(folder)), mlmodel, folder, name)
    raise NotFoundError(
        f"No installed mltrail integration loads the model at {os.fspath(model_uri)!r} "
        f"(flavours: {', '.join(sorted(flavors))}); install the integration for one of them",
        resource_id=os.fspath(model_uri),
    )
