"""The model folder's layout: MLmodel, the environment files, requirements, flavours.

A model is a folder holding the framework's model file(s), an `MLmodel` YAML file
naming its flavours, `requirements.txt`, `python_env.yaml` and `conda.yaml`: what
MLflow's loaders read. This module owns those names and their content; saving
(`saving`), signatures (`signatures`) and URIs (`uris`) build on it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import environment
from ..exceptions import InvalidParameterError, NotFoundError

MLMODEL = "MLmodel"
REQUIREMENTS = "requirements.txt"
PYTHON_ENV = "python_env.yaml"
CONDA_ENV = "conda.yaml"
INPUT_EXAMPLE = "input_example.json"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"
PYFUNC_FLAVOR = "python_function"
DEFAULT_ARTIFACT_PATH = "model"

# The tools MLflow lists to rebuild a model's environment; pinned to what is installed.
_BUILD_TOOLS = ("pip", "setuptools", "wheel")


@dataclass(frozen=True)
class ModelSpec:
    """What a flavour contributes to a saved model.

    Attributes:
        flavors: the `flavors` section of MLmodel, including `python_function`
            (see `pyfunc_flavor`).
        write: writes the model file(s) straight into the folder it is given;
            whatever it raises is reported as a `ModelSaveError`.
        requirements: pinned pip requirement lines (see `pin`).
    """

    flavors: dict[str, dict[str, Any]]
    write: Callable[[Path], None]
    requirements: Sequence[str] = ()


# requirements ----------------------------------------------------------------


def pin(distributions: Iterable[str] = (), modules: Iterable[str] = ()) -> list[str]:
    """Pinned requirement lines (`scikit-learn==1.9.1`) for what is installed here.

    Versions come from installed package metadata, cached per process, never from
    a `pip` subprocess. Prefer `distributions` (the names pip knows): mapping an
    import name in `modules` to its distribution scans every installed package
    once per process. Missing packages are left out rather than guessed.

    Args:
        distributions: distribution names, e.g. "scikit-learn".
        modules: importable module names, e.g. "lightgbm.sklearn".
    """
    lines: list[str] = []
    for dist in distributions:
        version = environment.distribution_version(dist)
        if version is not None:
            lines.append(f"{dist}=={version}")
    for module in modules:
        line = environment.requirement(module)
        if line is not None:
            lines.append(line)
    return _dedupe(lines)


def _dedupe(lines: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        name = re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0].lower().replace("_", "-")
        if name and name not in seen:
            seen.add(name)
            out.append(line)
    return out


def final_requirements(
    spec: ModelSpec,
    pip_requirements: Sequence[str] | None,
    extra_pip_requirements: Sequence[str] | None,
) -> list[str]:
    for arg, value in (
        ("pip_requirements", pip_requirements),
        ("extra_pip_requirements", extra_pip_requirements),
    ):
        if value is not None and isinstance(value, str):
            raise InvalidParameterError(
                f"{arg} must be a list of requirement lines, not a string", key=arg
            )
    base = list(pip_requirements) if pip_requirements is not None else list(spec.requirements)
    return _dedupe([*base, *(extra_pip_requirements or [])])


def pyfunc_flavor(loader_module: str, **config: Any) -> dict[str, Any]:
    """The `python_function` flavour entry MLflow's `pyfunc.load_model` dispatches on.

    Args:
        loader_module: the MLflow module that loads the model, e.g. "mlflow.sklearn".
        config: the loader's own keys, e.g. `model_path` or `data`.
    """
    return {
        "loader_module": loader_module,
        **config,
        "env": {"conda": CONDA_ENV, "virtualenv": PYTHON_ENV},
        "python_version": environment.python_version(),
    }


def yaml_dump(payload: dict[str, Any]) -> str:
    import yaml

    # libyaml's emitter, where PyYAML was built with it, is several times faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(payload, Dumper=dumper, default_flow_style=False, sort_keys=True)


def write_environment(folder: Path, requirements: Sequence[str]) -> None:
    for name, text in _environment_files(tuple(requirements)).items():
        (folder / name).write_text(text)


@functools.lru_cache(maxsize=64)
def _environment_files(requirements: tuple[str, ...]) -> dict[str, str]:
    """The text of requirements.txt, python_env.yaml and conda.yaml. Cached: autolog
    writes the same three files for every model of a flavour, and rendering YAML is
    a good part of what logging a small model costs."""
    build = pin(_BUILD_TOOLS)
    python_env = {
        "python": environment.python_version(),
        "build_dependencies": [*(line for line in build if not line.startswith("wheel")), "wheel"],
        "dependencies": [f"-r {REQUIREMENTS}"],
    }
    pip_line = next((line for line in build if line.startswith("pip==")), "pip")
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={environment.python_version()}",
            pip_line.replace("==", "<="),
            {"pip": list(requirements)},
        ],
        "name": "mltrail-env",
    }
    return {
        REQUIREMENTS: "".join(f"{line}\n" for line in requirements),
        PYTHON_ENV: yaml_dump(python_env),
        CONDA_ENV: yaml_dump(conda),
    }


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def read_mlmodel(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed MLmodel file of a local model folder.

    Raises:
        NotFoundError: the folder has no MLmodel file.
    """
    import yaml

    file = Path(path) / MLMODEL
    try:
        text = file.read_text()
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(
            f"No model at {str(path)!r}: it has no {MLMODEL} file", resource_id=str(path)
        ) from None
    content = yaml.safe_load(text)
    if not isinstance(content, dict) or not isinstance(content.get("flavors"), dict):
        raise InvalidParameterError(f"{str(file)!r} is not a valid {MLMODEL} file", key=str(file))
    return content


def flavor_config(path: str | os.PathLike[str], flavor: str) -> dict[str, Any]:
    """The MLmodel entry of one flavour of a local model folder.

    Raises:
        NotFoundError: the model was not saved with that flavour; the message
            names the flavours it has.
    """
    flavors = read_mlmodel(path)["flavors"]
    if flavor not in flavors:
        have = ", ".join(sorted(flavors)) or "none"
        raise NotFoundError(
            f"The model at {str(path)!r} has no {flavor!r} flavour (it has: {have})",
            resource_id=flavor,
        )
    return dict(flavors[flavor])
