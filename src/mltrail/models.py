"""Models in MLflow's on-disk layout, so MLflow's own loaders read what mltrail logged.

A model is a folder holding the framework's model file(s), an `MLmodel` YAML file
naming its flavours, `requirements.txt`, `python_env.yaml` and `conda.yaml`.
Flavour modules (the integrations) describe their files with a `ModelSpec`;
this module writes the layout, logs it into a run, reads it back and turns a
model URI into a local folder:

- `runs:/<run_id>/<path>`: a folder in the artifacts of a run;
- `models:/<name>/<version>`, `models:/<name>/<stage>`, `models:/<name>@<alias>`:
  a version of the model registry, resolved to the source it was registered from;
- a local path or `file:` URI.

Loading a model may execute code: pickled models run code while they are
unpickled. Load only models you trust. Loading from a local folder that is not
inside a run of a local mltrail store, and that this process did not write or
download, warns once per folder.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from . import environment
from .artifacts import split_runs_uri
from .exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError

if TYPE_CHECKING:
    from .client import TrackingClient
    from .entities import ModelVersion

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


class ModelSaveError(InvalidParameterError):
    """A model could not be written, typically because it cannot be pickled.

    Nothing is logged when this is raised: the model is written to a scratch
    folder first and only a complete folder becomes an artifact.
    """


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


@dataclass(frozen=True)
class ModelInfo:
    """What `log_model` logged, with MLflow's attribute names.

    Attributes:
        artifact_path: the folder of the model inside the run's artifacts.
        flavors: the flavours written into MLmodel.
        model_uri: `runs:/<run_id>/<artifact_path>`, for `load_model` and `register_model`.
        model_uuid: a fresh id for this copy of the model.
        run_id: the run that holds the model.
        utc_time_created: when MLmodel was written, as MLflow formats it.
        signature: MLflow's signature dict (`inputs`, `outputs`, `params`), or None.
        metadata: the user's metadata dict written into MLmodel, or None.
        registered_model_version: the version created when `registered_model_name`
            was given, else None.
    """

    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    model_uri: str
    model_uuid: str
    run_id: str
    utc_time_created: str
    signature: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    registered_model_version: str | None = None
    mlmodel: dict[str, Any] = field(default_factory=dict, repr=False)


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


def _final_requirements(
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


# signatures --------------------------------------------------------------------


def _colspec(frame: Any) -> list[dict[str, Any]]:
    from .data import _colspec_type

    return [
        {"type": _colspec_type(dtype), "name": str(col), "required": True}
        for col, dtype in frame.dtypes.items()
    ]


def _schema(data: Any) -> list[dict[str, Any]] | None:
    """MLflow's schema of one input or output, from dtypes and shape only (no data scan)."""
    if data is None:
        return None
    module = type(data).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(data, pd.Series):
            spec = _colspec(data.to_frame())[0]
            if data.name is None:
                del spec["name"]
            return [spec]
        if isinstance(data, pd.DataFrame):
            return _colspec(data)
        return None
    if not (hasattr(data, "dtype") and hasattr(data, "shape")):
        if not isinstance(data, (list, tuple)):
            return None
        import numpy as np

        data = np.asarray(data)
    if getattr(data.dtype, "kind", "O") not in "biufcMmUS":
        return None  # object arrays have no tensor type MLflow can enforce
    shape = [-1, *(int(n) for n in data.shape[1:])]
    return [{"type": "tensor", "tensor-spec": {"dtype": str(data.dtype), "shape": shape}}]


def infer_signature(model_input: Any = None, model_output: Any = None) -> dict[str, Any] | None:
    """MLflow's signature dict for a model's input (and optionally its output).

    A DataFrame gives column names and types; an array (numpy or scipy sparse) gives
    a tensor spec with its dtype and its shape with the row count left open. Only
    dtypes and shapes are read, so this costs microseconds whatever the data size.

    Args:
        model_input: training or example input: DataFrame, Series, array or list.
        model_output: predictions or targets of the same kinds, if known.

    Returns:
        `{"inputs": <json>, "outputs": <json or None>, "params": None}`, or None when
        the input's type has no MLflow schema.
    """
    inputs = _schema(model_input)
    if inputs is None:
        return None
    outputs = _schema(model_output)
    return {
        "inputs": json.dumps(inputs),
        "outputs": json.dumps(outputs) if outputs is not None else None,
        "params": None,
    }


def _signature_dict(signature: Any) -> dict[str, Any] | None:
    if signature is None or isinstance(signature, dict):
        return signature
    to_dict = getattr(signature, "to_dict", None)  # an MLflow ModelSignature, for instance
    if callable(to_dict):
        return dict(to_dict())
    raise InvalidParameterError(
        f"signature must be a dict from mltrail.models.infer_signature, not "
        f"{type(signature).__name__}",
        key="signature",
    )


def _write_input_example(folder: Path, example: Any) -> dict[str, Any]:
    """Write an input example as MLflow does; returns MLmodel's `saved_input_example_info`."""
    module = type(example).__module__
    if module.startswith("pandas"):
        import pandas as pd

        frame = example.to_frame() if isinstance(example, pd.Series) else example
        split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
        payload: Any = {"columns": split["columns"], "data": split["data"]}
        serving: Any = {"dataframe_split": payload}
        info = {"type": "dataframe", "pandas_orient": "split"}
    else:
        import numpy as np

        payload = np.asarray(example).tolist()
        serving = {"inputs": payload}
        info = {"type": "ndarray"}
    (folder / INPUT_EXAMPLE).write_text(json.dumps(payload))
    (folder / SERVING_INPUT_EXAMPLE).write_text(json.dumps(serving, indent=2))
    return {"artifact_path": INPUT_EXAMPLE, **info, "serving_input_path": SERVING_INPUT_EXAMPLE}


# writing -----------------------------------------------------------------------


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


def _yaml_dump(payload: dict[str, Any]) -> str:
    import yaml

    # libyaml's emitter, where PyYAML was built with it, is several times faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(payload, Dumper=dumper, default_flow_style=False, sort_keys=True)


def _write_environment(folder: Path, requirements: Sequence[str]) -> None:
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
        PYTHON_ENV: _yaml_dump(python_env),
        CONDA_ENV: _yaml_dump(conda),
    }


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def save_model(
    path: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
) -> dict[str, Any]:
    """Write a model folder in MLflow's layout at `path`, which must not exist yet.

    The model file streams straight into the folder (see `ModelSpec.write`), so a
    model bigger than memory never has to be held as bytes. If writing fails,
    the partial folder is removed.

    Args:
        path: the folder to create.
        spec: the flavour's files, MLmodel entries and requirements.
        signature: a signature dict (`infer_signature`); inferred from
            `input_example` when omitted.
        input_example: a few rows of input, saved as MLflow saves them.
        pip_requirements: replace the flavour's requirement lines.
        extra_pip_requirements: lines added to them.
        metadata: free-form dict stored under MLmodel's `metadata`.
        run_id: the run the model belongs to, written into MLmodel.
        artifact_path: the model's folder inside that run's artifacts.

    Returns:
        The MLmodel content that was written.

    Raises:
        AlreadyExistsError: `path` exists and is not an empty folder.
        ModelSaveError: the flavour could not write the model (e.g. it cannot be pickled).
    """
    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AlreadyExistsError(
            f"Cannot save a model to {str(folder)!r}: the path already exists",
            resource_id=str(folder),
        )
    requirements = _final_requirements(spec, pip_requirements, extra_pip_requirements)
    signature_dict = _signature_dict(signature)
    if signature_dict is None and input_example is not None:
        signature_dict = infer_signature(input_example)
    folder.mkdir(parents=True, exist_ok=True)
    flavour_names = ", ".join(k for k in spec.flavors if k != PYFUNC_FLAVOR)
    try:
        spec.write(folder)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelSaveError(
            f"Could not save the {flavour_names} model to {str(folder)!r}: "
            f"{type(exc).__name__}: {exc}",
            key="model",
        ) from exc
    try:
        mlmodel: dict[str, Any] = {
            "artifact_path": artifact_path,
            "flavors": spec.flavors,
            "model_uuid": uuid.uuid4().hex,
            "run_id": run_id,
            "utc_time_created": _utc_now(),
        }
        if input_example is not None:
            mlmodel["saved_input_example_info"] = _write_input_example(folder, input_example)
        if signature_dict is not None:
            mlmodel["signature"] = signature_dict
        if metadata:
            mlmodel["metadata"] = dict(metadata)
        mlmodel = {k: v for k, v in mlmodel.items() if v is not None}
        _write_environment(folder, requirements)
        mlmodel["model_size_bytes"] = _folder_size(folder)
        (folder / MLMODEL).write_text(_yaml_dump(mlmodel))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _mark_known(folder)
    return mlmodel


def log_model(
    artifact_path: str | None,
    spec: ModelSpec,
    *,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    registered_model_name: str | None = None,
    run_id: str | None = None,
) -> ModelInfo:
    """Save a model straight into the run's artifacts (staged, then published at once).

    Args:
        artifact_path: the model's folder inside the run's artifacts ("model" if None).
        spec: the flavour's files, MLmodel entries and requirements.
        signature, input_example, pip_requirements, extra_pip_requirements, metadata:
            as for `save_model`.
        registered_model_name: also register the logged model under this name
            (creating the registered model if needed).
        run_id: log into this run; by default the active run, started if none is.

    Returns:
        A ModelInfo whose `model_uri` loads the model back.

    Raises:
        ModelSaveError: the model could not be written; nothing was logged.
    """
    from . import fluent

    artifact_path = (artifact_path or DEFAULT_ARTIFACT_PATH).strip("/")
    if not artifact_path or ".." in artifact_path.split("/"):
        raise InvalidParameterError(
            f"Invalid model artifact path {artifact_path!r}", key="artifact_path"
        )
    if run_id is None:
        client, run_id = fluent.run_for_logging()
    else:
        client = fluent.current_client()
    with client.stage_artifacts(run_id, artifact_path) as folder:
        mlmodel = save_model(
            folder,
            spec,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            run_id=run_id,
            artifact_path=artifact_path,
        )
    model_uri = f"runs:/{run_id}/{artifact_path}"
    version = None
    if registered_model_name is not None:
        version = fluent.register_model(model_uri, registered_model_name).version
    return ModelInfo(
        artifact_path=artifact_path,
        flavors=mlmodel["flavors"],
        model_uri=model_uri,
        model_uuid=mlmodel["model_uuid"],
        run_id=run_id,
        utc_time_created=mlmodel["utc_time_created"],
        signature=mlmodel.get("signature"),
        metadata=mlmodel.get("metadata"),
        registered_model_version=version,
        mlmodel=mlmodel,
    )


# reading -----------------------------------------------------------------------


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


# resolving model URIs ----------------------------------------------------------

_known: set[Path] = set()  # folders this process wrote or downloaded: loading them is silent
_warned: set[Path] = set()
_known_lock = threading.Lock()


def _mark_known(folder: Path) -> None:
    with _known_lock:
        _known.add(folder.resolve())


def _inside_local_run(folder: Path) -> bool:
    """True for a folder inside the artifacts of a run of a local store."""
    from .stores.journal import in_run_artifacts

    return in_run_artifacts(folder)


def _check_local_origin(folder: Path) -> None:
    resolved = folder.resolve()
    with _known_lock:
        if any(p in _known for p in (resolved, *resolved.parents)) or resolved in _warned:
            return
        _warned.add(resolved)
    if _inside_local_run(resolved):
        return
    warnings.warn(
        f"mltrail: loading the model at {str(folder)!r}, which no run of a local mltrail "
        "store holds. Loading a model can execute code from its files (pickles do): load "
        "only models you trust.",
        UserWarning,
        stacklevel=4,
    )


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)
    return None


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, version or stage, alias) of `models:/<name>/<version|stage|latest>` or `@alias`."""
    rest = uri[len("models:/") :].lstrip("/")
    if "@" in rest and "/" not in rest.split("@", 1)[1]:
        name, _, alias = rest.rpartition("@")
        if name and alias:
            return name, None, alias
    name, sep, version = rest.rpartition("/")
    if not (name and sep and version):
        raise InvalidParameterError(
            f"Invalid model URI {uri!r}: expected models:/<name>/<version>, "
            "models:/<name>/<stage> or models:/<name>@<alias>",
            key="model_uri",
        )
    return name, version, None


def model_version_for(uri: str, client: TrackingClient | None = None) -> ModelVersion:
    """The registry entry a `models:/` URI points at.

    Raises:
        NotFoundError: the name, version, stage or alias does not exist.
    """
    from .stores.registry import ALL_STAGES, canonical_stage

    client = client or _default_client()
    name, version, alias = _parse_models_uri(uri)
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    assert version is not None
    if version.isdigit():
        return client.get_model_version(name, version)
    if version.lower() == "latest":
        stages: list[str] | None = None
    elif version.lower() in (s.lower() for s in ALL_STAGES):
        stages = [canonical_stage(version)]
    else:
        raise InvalidParameterError(
            f"Invalid model URI {uri!r}: {version!r} is neither a version number, a stage "
            f"({', '.join(ALL_STAGES)}) nor 'latest'",
            key="model_uri",
        )
    latest = client.get_latest_versions(name, stages)
    if not latest:
        raise NotFoundError(
            f"Registered model {name!r} has no version in stage {version!r}", resource_id=uri
        )
    return max(latest, key=lambda mv: int(mv.version))


def _source_uri(version: ModelVersion) -> str:
    """A URI mltrail can download for a version's source.

    A server may store the source as the artifact location it resolved a
    `runs:/` URI to; the run id it keeps with the version turns that back
    into a `runs:/` URI.
    """
    source = version.source
    if source.startswith("runs:/") or _local_path(source) is not None:
        return source
    marker = f"/{version.run_id}/artifacts" if version.run_id else None
    if marker and marker in source:
        rest = source.split(marker, 1)[1].strip("/")
        return f"runs:/{version.run_id}/{rest}"
    return source


def _default_client() -> TrackingClient:
    from . import fluent

    return fluent.current_client()


def _file_uri_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def download_model(
    model_uri: str | os.PathLike[str],
    dst_path: str | os.PathLike[str] | None = None,
    client: TrackingClient | None = None,
) -> Path:
    """A local folder holding the model `model_uri` names.

    A model of a local store is read in place (no copy) unless `dst_path` is given;
    a remote one is downloaded file by file into `dst_path` (a new temporary
    folder by default).

    Args:
        model_uri: `runs:/<run_id>/<path>`, `models:/<name>/<version|stage|latest>`,
            `models:/<name>@<alias>`, a local path or a `file:` URI.
        dst_path: an existing folder to download into.
        client: the client whose store and registry resolve the URI; default: the
            current tracking URI's.

    Raises:
        NotFoundError: the run, registered model, version, alias or path does not exist,
            or holds no MLmodel file.
        InvalidParameterError: the URI is malformed or of a scheme mltrail cannot read.
    """
    uri = os.fspath(model_uri)
    for _ in range(8):  # a registry source is itself a URI; bounded in case of a cycle
        if uri.startswith("models:/"):
            uri = _source_uri(model_version_for(uri, client))
            continue
        if uri.startswith("runs:/"):
            return _download_run_model(uri, dst_path, client or _default_client())
        local = _local_path(uri)
        if local is None:
            raise InvalidParameterError(
                f"Cannot load a model from {uri!r}: use runs:/, models:/, a local path or a "
                "file: URI",
                key="model_uri",
            )
        if not local.exists():
            raise NotFoundError(
                f"No model at {str(local)!r}: the path does not exist", resource_id=str(local)
            )
        read_mlmodel(local)
        _check_local_origin(local)
        if dst_path is None:
            return local
        target = Path(dst_path) / local.name
        shutil.copytree(local, target, dirs_exist_ok=True)
        _mark_known(target)
        return target
    raise InvalidParameterError(
        f"Model URI {os.fspath(model_uri)!r} does not resolve to a model", key="model_uri"
    )


def _download_run_model(
    uri: str, dst_path: str | os.PathLike[str] | None, client: TrackingClient
) -> Path:
    run_id, path = split_runs_uri(uri, key="model_uri")
    run = client.get_run(run_id)
    base = _file_uri_path(run.info.artifact_uri)
    if base is not None and dst_path is None:
        folder = base / path if path else base
        if not (folder / MLMODEL).is_file():
            raise NotFoundError(
                f"No model at {uri}: the run has no {MLMODEL} file under {path or '/'!r}",
                resource_id=uri,
            )
        _mark_known(folder)
        return folder
    client.flush()  # a remote store uploads in the background: this process's files first
    target = (
        Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="mltrail-model-"))
    )
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(client.download_artifacts(run_id, path, str(target)))
    except NotFoundError:
        raise NotFoundError(
            f"No model at {uri}: the run has no artifact {path!r}", resource_id=uri
        ) from None
    if not (local / MLMODEL).is_file():
        raise NotFoundError(
            f"No model at {uri}: the run has no {MLMODEL} file under {path or '/'!r}",
            resource_id=uri,
        )
    _mark_known(local)
    return local
