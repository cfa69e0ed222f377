"""mltrail's exceptions: one base class and a few subclasses that name what was wrong.

`error_code` carries the MLflow REST error code, so an error raised by a local
store and one returned by a tracking server look the same to the caller.
"""

from __future__ import annotations


class MltrailError(Exception):
    """Base of every error mltrail raises on its own behalf."""

    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code


# Code written against MLflow catches `MlflowException`; let it keep working.
MlflowException = MltrailError


class InvalidParameterError(MltrailError):
    """A key, value, filter or argument that cannot be accepted as given.

    Attributes:
        key: the offending key or argument name, when there is one.
    """

    error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ParamConflictError(InvalidParameterError):
    """A param logged again for the same run with a different value."""


class FilterSyntaxError(InvalidParameterError):
    """A malformed search filter or order_by clause.

    Attributes:
        position: index in the filter string where the bad token starts.
    """

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class NotFoundError(MltrailError):
    """An experiment, run, artifact or model that does not exist.

    Attributes:
        resource_id: the id or name that was looked up.
    """

    error_code = "RESOURCE_DOES_NOT_EXIST"

    def __init__(self, message: str, *, resource_id: str | None = None) -> None:
        super().__init__(message)
        self.resource_id = resource_id


class AlreadyExistsError(MltrailError):
    """Creating something (an experiment, a registered model) that already exists."""

    error_code = "RESOURCE_ALREADY_EXISTS"

    def __init__(self, message: str, *, resource_id: str | None = None) -> None:
        super().__init__(message)
        self.resource_id = resource_id


class RunStateError(MltrailError):
    """An operation that the run's state forbids (a deleted run, a second active run)."""

    error_code = "INVALID_STATE"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class StorageError(MltrailError):
    """mltrail could not write its local files (a full disk, a read-only folder).

    Raised instead of the bare `OSError`, naming the path, so a caller can tell a
    problem of mltrail's storage from one of its own code.

    Attributes:
        path: the file or folder that could not be written.
    """

    error_code = "STORAGE_ERROR"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def wrap(cls, exc: OSError, path: object, what: str) -> StorageError:
        """The error for `exc` raised while doing `what` on `path`."""
        reason = exc.strerror or type(exc).__name__
        return cls(f"mltrail could not {what} {path}: {reason}", path=str(path))


class DamagedRunError(MltrailError):
    """A run's files on disk cannot be read (a damaged or hand-edited summary.json).

    Attributes:
        path: the file that could not be read.
    """

    error_code = "DATA_LOSS"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnsupportedUriError(InvalidParameterError):
    """A tracking URI whose scheme no installed store handles."""


class RemoteError(MltrailError):
    """A tracking server refused a request or could not be reached.

    Attributes:
        status_code: the HTTP status, or None when no answer came.
    """

    def __init__(
        self, message: str, *, error_code: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, error_code=error_code)
        self.status_code = status_code


class AuthError(RemoteError):
    """The server answered 401 or 403: credentials are missing, wrong or not allowed."""
