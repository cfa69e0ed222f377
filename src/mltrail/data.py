"""Describe a dataset by name, digest, schema and shape, never by its content.

The digest hashes the shape and at most 2,000 rows (the first 1,000 and 1,000
spread evenly over the rest) with SHA-1, which CPUs accelerate (more than twice
as fast as MD5 here), so describing a large training set costs well under a
millisecond, and the same data gets the same digest in every run. pandas and
numpy are imported only when a dataset is described.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .entities import Dataset

_DIGEST_ROWS = 2_000

_PANDAS_TYPES = {
    "b": "boolean",
    "i": "long",
    "u": "long",
    "f": "double",
    "M": "datetime",
    "O": "string",
    "U": "string",
    "S": "binary",
}


def colspec_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    if kind == "i" and getattr(dtype, "itemsize", 8) <= 4:
        return "integer"
    if kind == "f" and getattr(dtype, "itemsize", 8) <= 4:
        return "float"
    return _PANDAS_TYPES.get(kind, "string")


def from_pandas(
    df: Any, source: str = "", name: str | None = None, targets: str | None = None
) -> Dataset:
    """A Dataset for a pandas DataFrame (or Series)."""
    import pandas as pd

    if isinstance(df, pd.Series):
        df = df.to_frame()
    head = df.head(_DIGEST_ROWS)
    try:
        hashed = pd.util.hash_pandas_object(head, index=False).to_numpy()
    except TypeError:  # cells pandas cannot hash (lists, dicts): their text instead
        hashed = pd.util.hash_pandas_object(head.astype(str), index=False).to_numpy()
    digest = hashlib.sha1(hashed.tobytes() + repr(df.shape).encode()).hexdigest()[:8]
    schema = {
        "mlflow_colspec": [
            {"type": colspec_type(dtype), "name": str(col), "required": True}
            for col, dtype in df.dtypes.items()
        ]
    }
    profile = {"num_rows": len(df), "num_elements": int(df.size)}
    if targets is not None:
        profile["targets"] = targets  # type: ignore[assignment]
    return Dataset(
        name=name or "dataset",
        digest=digest,
        source_type="code" if not source else "local",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


def _sample_rows(count: int) -> Any:
    """The rows an array's digest reads: the first ones and an even spread of the rest.

    Hashing every row of a large training set would cost more than many fits; the
    head plus a spread still tells apart data sets that differ anywhere in bulk.
    """
    import numpy as np

    if count <= _DIGEST_ROWS:
        return slice(None)
    head = np.arange(_DIGEST_ROWS // 2)
    spread = np.linspace(_DIGEST_ROWS // 2, count - 1, _DIGEST_ROWS // 2).astype(np.int64)
    return np.concatenate([head, spread])


def _array_spec(array: Any) -> dict[str, Any]:
    shape = [-1, *list(array.shape[1:])]
    return {"type": "tensor", "tensor-spec": {"dtype": str(array.dtype), "shape": shape}}


def _as_rows(part: Any) -> Any:
    """`part` as something whose rows index by position: a numpy array or a CSR matrix.

    Training data arrives as lists, pandas objects, scipy sparse matrices of any
    format (COO and DOK do not index rows) or other array-likes; describing it must
    not fail on any of them, nor copy a sparse matrix into a dense one.
    """
    import numpy as np

    if type(part).__module__.startswith("scipy.sparse"):
        return part.tocsr()
    if not isinstance(part, np.ndarray):
        try:
            part = np.asarray(part)
        except ValueError:  # ragged nesting
            part = np.asarray(part, dtype=object)
    return part.reshape(1) if part.ndim == 0 else part


def _sample_bytes(rows: Any) -> bytes:
    import numpy as np

    sample = rows[_sample_rows(rows.shape[0])]
    if hasattr(sample, "toarray"):  # CSR: only the sampled rows become dense
        sample = sample.toarray()
    if sample.dtype == object:  # object arrays hold pointers: hash their text instead
        return repr(sample.tolist()).encode()
    return np.ascontiguousarray(sample).tobytes()


def from_numpy(
    features: Any, targets: Any = None, source: str = "", name: str | None = None
) -> Dataset:
    """A Dataset for a feature array (dense or scipy sparse, or any array-like) and targets."""
    features = _as_rows(features)
    targets = None if targets is None else _as_rows(targets)
    digest = hashlib.sha1(repr(features.shape).encode())
    for part in (features, targets):
        if part is not None:
            digest.update(_sample_bytes(part))
    schema = {"mlflow_tensorspec": {"features": json.dumps([_array_spec(features)])}}
    profile: dict[str, Any] = {"features_shape": list(features.shape)}
    if targets is not None:
        schema["mlflow_tensorspec"]["targets"] = json.dumps([_array_spec(targets)])
        profile["targets_shape"] = list(targets.shape)
    return Dataset(
        name=name or "dataset",
        digest=digest.hexdigest()[:8],
        source_type="code" if not source else "local",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


def from_any(data: Any, targets: Any = None, name: str | None = None) -> Dataset:
    """A Dataset for whatever a user or a framework passes as training data."""
    if type(data).__module__.startswith("pandas"):
        return from_pandas(data, name=name)
    return from_numpy(data, targets, name=name)
