"""Model signatures and input examples, as MLflow writes them into MLmodel.

Only dtypes and shapes are read, never the data, so a signature costs microseconds
whatever the size of the training set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..exceptions import InvalidParameterError
from .layout import INPUT_EXAMPLE, SERVING_INPUT_EXAMPLE


def _colspec(frame: Any) -> list[dict[str, Any]]:
    from ..data import colspec_type

    return [
        {"type": colspec_type(dtype), "name": str(col), "required": True}
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


def signature_dict(signature: Any) -> dict[str, Any] | None:
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


def write_input_example(folder: Path, example: Any) -> dict[str, Any]:
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
