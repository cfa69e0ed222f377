"""Models in MLflow's on-disk layout, so MLflow's own loaders read what mltrail logged.

A model is a folder holding the framework's model file(s), an `MLmodel` YAML file
naming its flavours, `requirements.txt`, `python_env.yaml` and `conda.yaml`.
Flavour modules (the integrations) describe their files with a `ModelSpec`;
this package writes the layout, logs it into a run, reads it back and turns a
model URI into a local folder. One module per concern:

- `layout`: the folder's file names, MLmodel, environment files, requirements;
- `saving`: `save_model` and `log_model`, for every flavour;
- `signatures`: `infer_signature` and input examples;
- `uris`: `runs:/`, `models:/` (registry versions and logged-model ids), paths.

Loading a model may execute code: pickled models run code while they are
unpickled. Load only models you trust.
"""

from __future__ import annotations

from .layout import (
    CONDA_ENV,
    INPUT_EXAMPLE,
    MLMODEL,
    PYFUNC_FLAVOR,
    PYTHON_ENV,
    REQUIREMENTS,
    ModelSpec,
    flavor_config,
    pin,
    pyfunc_flavor,
    read_mlmodel,
)
from .saving import ModelInfo, ModelSaveError, log_model, save_model
from .signatures import infer_signature
from .uris import download_model, model_version_for

__all__ = [
    "CONDA_ENV",
    "INPUT_EXAMPLE",
    "MLMODEL",
    "PYFUNC_FLAVOR",
    "PYTHON_ENV",
    "REQUIREMENTS",
    "ModelInfo",
    "ModelSaveError",
    "ModelSpec",
    "download_model",
    "flavor_config",
    "infer_signature",
    "log_model",
    "model_version_for",
    "pin",
    "pyfunc_flavor",
    "read_mlmodel",
    "save_model",
]
