"""One HTTP session per tracking server: auth, TLS, retries, and error translation.

Every request mltrail makes to a server goes through `HttpSession`, so this is
the one place where transport failures and the server's error JSON
(`{"error_code", "message"}`) become mltrail's exceptions.

Credentials come from the variables MLflow users already set and never reach
a message, a file or a log line (`HttpSession.scrub` removes them from any text
taken from an answer):

- ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``: HTTP Basic (wins);
- ``MLFLOW_TRACKING_TOKEN``: ``Authorization: Bearer <token>``;
- ``MLFLOW_TRACKING_INSECURE_TLS=true``: do not verify the server's certificate;
- ``MLFLOW_TRACKING_SERVER_CERT_PATH``: a CA bundle to verify it with;
- ``MLFLOW_TRACKING_CLIENT_CERT_PATH``: a client certificate (PEM) to present.

A `user:password@` in the URI also works as Basic auth when the variables are unset.

Retries: connection errors, timeouts, 408, 429 and 5xx answers are retried with
exponential backoff and jitter, waiting at least what a `Retry-After` header
asks; other 4xx answers are never retried; 401/403 raise `AuthError` at once.
Tuning, all optional (seconds unless said otherwise):

- ``MLTRAIL_HTTP_TIMEOUT`` (30): read timeout of one request;
- ``MLTRAIL_HTTP_CONNECT_TIMEOUT`` (5): connect timeout;
- ``MLTRAIL_HTTP_RETRIES`` (3): retries of a call made in the foreground (reads,
  experiment lookups); the background sender retries for as long as the process lives;
- ``MLTRAIL_HTTP_BACKOFF`` (0.5): first backoff delay, doubled at each retry;
- ``MLTRAIL_HTTP_BACKOFF_MAX`` (30): the longest backoff delay;
- ``MLTRAIL_CREATE_TIMEOUT`` (2): how long `set_experiment` and `create_run` wait for
  the server before carrying on offline with local ids (the request goes on);
- ``MLTRAIL_SEND_INTERVAL`` (0.1): how long the sender lets records gather before a
  request, so a tight logging loop ships in few large batches;
- ``MLTRAIL_END_RUN_TIMEOUT`` (0): how long ending a run waits for its records to
  reach a healthy server; by default it does not wait (a read waits instead, see
  below, and exit waits for everything);
- ``MLTRAIL_READ_FLUSH_TIMEOUT`` (2): a read first waits for this process's unsent
  records of the run it reads, for as long as the server keeps accepting them (at
  most 60 s), giving up after this many seconds without progress;
- ``MLTRAIL_SPOOL_DIR`` (``~/.mltrail/spool``): where records wait to be shipped.
"""

from __future__ import annotations

import base64
import email.utils
import os
import random
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

import requests
import urllib3

from ...exceptions import (
    AlreadyExistsError,
    AuthError,
    InvalidParameterError,
    MltrailError,
    NotFoundError,
    ParamConflictError,
    RemoteError,
)
from .wire import encode_json

API = "/api/2.0/mlflow/"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_TRUE = ("1", "true", "yes", "on")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class RemoteSettings:
    """Timeouts, retry policy and spool location of the remote store (see module doc)."""

    timeout: float = 30.0
    connect_timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 30.0
    create_timeout: float = 2.0
    send_interval: float = 0.1
    end_run_timeout: float = 0.0
    read_flush_timeout: float = 2.0
    spool_dir: Path = field(default_factory=lambda: Path.home() / ".mltrail" / "spool")

    @classmethod
    def from_env(cls, **overrides: Any) -> RemoteSettings:
        """Settings from the MLTRAIL_* variables, then `overrides` on top."""
        spool = os.environ.get("MLTRAIL_SPOOL_DIR")
        settings = cls(
            timeout=_env_float("MLTRAIL_HTTP_TIMEOUT", cls.timeout),
            connect_timeout=_env_float("MLTRAIL_HTTP_CONNECT_TIMEOUT", cls.connect_timeout),
            retries=int(_env_float("MLTRAIL_HTTP_RETRIES", cls.retries)),
            backoff=_env_float("MLTRAIL_HTTP_BACKOFF", cls.backoff),
            backoff_max=_env_float("MLTRAIL_HTTP_BACKOFF_MAX", cls.backoff_max),
            create_timeout=_env_float("MLTRAIL_CREATE_TIMEOUT", cls.create_timeout),
            send_interval=_env_float("MLTRAIL_SEND_INTERVAL", cls.send_interval),
            end_run_timeout=_env_float("MLTRAIL_END_RUN_TIMEOUT", cls.end_run_timeout),
            read_flush_timeout=_env_float("MLTRAIL_READ_FLUSH_TIMEOUT", cls.read_flush_timeout),
            **({"spool_dir": Path(spool).expanduser()} if spool else {}),
        )
        return replace(settings, **overrides) if overrides else settings

    def retry_after_delay(self, wanted: float) -> float:
        """How long to honour a server's Retry-After: as asked, up to a minute (or the
        backoff cap when that is longer), so one odd header cannot stall a process."""
        return min(wanted, max(self.backoff_max, 60.0))

    def backoff_delay(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based): exponential, jittered, capped."""
        ceiling = min(self.backoff_max, self.backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def settle_time(self) -> float:
        """How long after a request was sent the server may still act on it, answer or
        not: the read timeout it was sent with, plus a second. A create that is not
        idempotent, whose answer was lost, is only looked for and not found (so sent
        anew) once this has passed."""
        return self.timeout + 1.0

    def retry_delay(self, attempt: int, exc: BaseException | None) -> float:
        """Delay before retry number `attempt` after `exc`: the backoff, or longer when
        the server asked for a longer wait with Retry-After."""
        delay = self.backoff_delay(attempt)
        wanted = retry_after(exc) if exc is not None else None
        return delay if wanted is None else max(delay, self.retry_after_delay(wanted))


def public_url(uri: str) -> str:
    """`uri` without user info, query or trailing slash: safe to print and to store."""
    parsed = urlparse(uri)
    netloc = parsed.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parsed.port:
        netloc = f"{netloc}:{parsed.port}"
    return urlunparse((parsed.scheme, netloc, parsed.path.rstrip("/"), "", "", ""))


def is_transient(exc: BaseException) -> bool:
    """True for a failure worth retrying later: no answer, a timeout, 408/429/5xx."""
    return bool(getattr(exc, "transient", False))


def request_sent(exc: BaseException) -> bool:
    """False only when a failed request certainly never reached the server (the
    connection was refused or could not be opened in time); True when it may have:
    the server may have acted on it even though no answer came back."""
    return bool(getattr(exc, "sent", True))


def _never_sent(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    inner: BaseException | None = exc
    for _ in range(10):  # the chain is short; bounded all the same
        if inner is None:
            return False
        if isinstance(inner, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)):
            return True
        reason = getattr(inner, "reason", None)
        inner = (
            reason if isinstance(reason, BaseException) else (inner.__cause__ or inner.__context__)
        )
    return False


def retry_after(exc: BaseException) -> float | None:
    """The delay a server asked for with Retry-After, if it did."""
    return getattr(exc, "retry_after", None)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSession:
    """Requests to one tracking server over one keep-alive `requests.Session`.

    Args:
        uri: the server address, e.g. ``https://mlflow.example.com/prefix``.
        settings: timeouts and retry policy; default: from the environment.
    """

    def __init__(self, uri: str, settings: RemoteSettings | None = None) -> None:
        self.settings = settings or RemoteSettings.from_env()
        self.base_url = public_url(uri)
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self._session = self._new_session(uri)

    # setup ---------------------------------------------------------------

    def _new_session(self, uri: str) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # a .netrc must not override the MLflow variables
        parsed = urlparse(uri)
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user and password:
            session.auth = (user, password)
            self._add_secrets(password, f"{user}:{password}")
            self.auth_kind = f"Basic (user {user!r})"
        elif token:
            session.headers["Authorization"] = f"Bearer {token}"
            self._add_secrets(token)
            self.auth_kind = "Bearer token"
        elif parsed.username and parsed.password:
            session.auth = (parsed.username, parsed.password)
            self._add_secrets(parsed.password, f"{parsed.username}:{parsed.password}")
            self.auth_kind = f"Basic (user {parsed.username!r} from the URI)"
        else:
            self.auth_kind = "none"
        insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE
        ca_path = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
        if insecure and ca_path:
            raise InvalidParameterError(
                "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are both "
                "set: choose one (verify with the CA bundle, or do not verify at all)",
                key="MLFLOW_TRACKING_INSECURE_TLS",
            )
        session.verify = False if insecure else (ca_path or True)
        if insecure:
            # Asked for explicitly; urllib3 would otherwise warn on every single request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
        if client_cert:
            session.cert = client_cert
        # Retries are ours (with Retry-After and jitter); urllib3 must not add its own.
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = "mltrail"
        return session

    def _add_secrets(self, *values: str) -> None:
        for value in values:
            if value:
                self._secrets.append(value)
                self._secrets.append(base64.b64encode(value.encode()).decode())

    def scrub(self, text: str) -> str:
        """`text` with every credential replaced by ***."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._session.close()

    # requests ------------------------------------------------------------

    def call(
        self,
        method: str,
        endpoint: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """One MLflow REST call; returns the decoded JSON answer.

        Args:
            method: GET (payload as query parameters) or POST/PATCH/DELETE (JSON body).
            endpoint: the path under ``/api/2.0/mlflow/``, e.g. ``runs/get``.
            payload: the request fields.
            timeout: read timeout (and cap on the connect timeout) for this call.
            retries: how often a transient failure is retried (default from settings).

        Raises:
            AuthError: 401/403. NotFoundError, AlreadyExistsError, InvalidParameterError,
            ParamConflictError: the server refused the request. RemoteError: any other
            failure; `is_transient(exc)` tells whether trying again later may help.
        """
        url = self.base_url + API + endpoint
        if method == "GET":
            kwargs: dict[str, Any] = {"params": dict(payload or {})}
        else:
            kwargs = {
                "data": encode_json(payload or {}),
                "headers": {"Content-Type": "application/json"},
            }
        response = self._send(
            lambda t: self._session.request(method, url, timeout=t, **kwargs),
            endpoint,
            timeout,
            retries,
        )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"The tracking server at {self.base_url} answered {endpoint} with something "
                f"that is not JSON (HTTP {response.status_code}); is this an MLflow server?",
                status_code=response.status_code,
            ) from None

    def raw(
        self, method: str, path: str, *, timeout: float | None = None, retries: int = 0
    ) -> requests.Response:
        """A request to any path of the server (``/health``, ``/version``); errors raise."""
        url = self.base_url + path
        return self._send(
            lambda t: self._session.request(method, url, timeout=t), path, timeout, retries
        )

    def upload(self, artifact_path: str, local_file: Path, *, retries: int | None = None) -> None:
        """PUT a file to the proxied artifact API, streamed from disk."""
        url = self.artifact_url(artifact_path)

        def send(t: tuple[float, float]) -> requests.Response:
            with open(local_file, "rb") as handle:  # reopened for each retry
                return self._session.put(url, data=handle, timeout=t)

        self._send(send, f"artifact {artifact_path}", None, retries)

    def download(self, artifact_path: str, target: Path, *, retries: int | None = None) -> None:
        """GET a file from the proxied artifact API into `target`, streamed to disk."""
        url = self.artifact_url(artifact_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")

        def send(t: tuple[float, float]) -> requests.Response:
            response = self._session.get(url, timeout=t, stream=True)
            if response.status_code == 200:
                with open(tmp, "wb") as handle:
                    shutil.copyfileobj(response.raw, handle, 1 << 20)
            return response

        try:
            self._send(send, f"artifact {artifact_path}", None, retries)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def list_artifacts(self, artifact_path: str) -> list[dict[str, Any]]:
        """The entries of one folder of the proxied artifact store (names, not paths)."""
        url = self.base_url + ARTIFACTS_API
        response = self._send(
            lambda t: self._session.get(url, params={"path": artifact_path}, timeout=t),
            "artifacts list",
            None,
            None,
        )
        return response.json().get("files", []) if response.content else []

    def artifact_url(self, artifact_path: str) -> str:
        return f"{self.base_url}{ARTIFACTS_API}/{quote(artifact_path.strip('/'), safe='/')}"

    def _send(
        self,
        send: Callable[[tuple[float, float]], requests.Response],
        what: str,
        timeout: float | None,
        retries: int | None,
    ) -> requests.Response:
        settings = self.settings
        read_timeout = settings.timeout if timeout is None else timeout
        timeouts = (min(settings.connect_timeout, read_timeout), read_timeout)
        attempts = 1 + max(0, settings.retries if retries is None else retries)
        for attempt in range(attempts):
            try:
                response = send(timeouts)
            except requests.RequestException as exc:
                error: MltrailError = self._transport_error(what, exc)
                error.__cause__ = exc
            else:
                if response.status_code < 400:
                    return response
                error = self.translate(response, what)
            if not is_transient(error) or attempt == attempts - 1:
                raise error
            time.sleep(settings.retry_delay(attempt, error))
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_error(self, what: str, exc: requests.RequestException) -> RemoteError:
        if isinstance(exc, requests.exceptions.SSLError):
            error = RemoteError(
                f"TLS failed talking to {self.base_url} ({what}): {self._reason(exc)}. Set "
                "MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA bundle, or "
                "MLFLOW_TRACKING_INSECURE_TLS=true to skip verification",
                error_code="TLS_ERROR",
            )
            return error  # not transient: trying again cannot fix a certificate
        if isinstance(exc, requests.Timeout):
            text = f"The tracking server at {self.base_url} did not answer {what} in time"
        else:
            text = f"Could not reach the tracking server at {self.base_url} ({what})"
        error = RemoteError(f"{text}: {self._reason(exc)}", error_code="TEMPORARILY_UNAVAILABLE")
        error.transient = True  # type: ignore[attr-defined]
        error.sent = not _never_sent(exc)  # type: ignore[attr-defined]
        return error

    def _reason(self, exc: BaseException) -> str:
        # The innermost cause names what happened (refused, reset, timed out) without
        # requests' long pool description.
        inner: BaseException = exc
        while True:
            nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
            if not isinstance(nxt, BaseException) or nxt is inner:
                break
            inner = nxt
        text = str(inner) or type(inner).__name__
        if ": " in text and text.startswith("<"):
            text = text.split(": ", 1)[1]
        return self.scrub(text[:300])

    def translate(self, response: requests.Response, what: str) -> MltrailError:
        """The mltrail exception for an error answer (the one translation point)."""
        status = response.status_code
        code, message = "", ""
        try:
            body = response.json()
            if isinstance(body, dict):
                code = str(body.get("error_code") or "")
                message = str(body.get("message") or "")
        except ValueError:
            message = (
                response.text[:300]
                if "html" not in response.headers.get("Content-Type", "")
                else ""
            )
        message = self.scrub(message)
        where = f"the tracking server at {self.base_url}"
        if status in (401, 403):
            kind = "rejected the credentials" if status == 401 else "denied permission"
            return AuthError(
                f"{where[0].upper()}{where[1:]} {kind} (HTTP {status}"
                f"{', ' + code if code else ''}) for {what}; auth in use: {self.auth_kind}. "
                "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                "MLFLOW_TRACKING_TOKEN, to credentials the server accepts",
                error_code=code or ("UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED"),
                status_code=status,
            )
        if code == "RESOURCE_DOES_NOT_EXIST" or (status == 404 and not code):
            return NotFoundError(message or f"{what}: not found on {where}")
        if code == "RESOURCE_ALREADY_EXISTS":
            return AlreadyExistsError(message or f"{what}: already exists on {where}")
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE") and status < 500:
            if "Changing param values is not allowed" in message:
                return ParamConflictError(message)
            return InvalidParameterError(message)
        error = RemoteError(
            f"{where[0].upper()}{where[1:]} answered {what} with HTTP {status}"
            f"{' ' + code if code else ''}{': ' + message if message else ''}",
            error_code=code or None,
            status_code=status,
        )
        if status in RETRY_STATUSES:
            error.transient = True  # type: ignore[attr-defined]
            error.retry_after = _parse_retry_after(  # type: ignore[attr-defined]
                response.headers.get("Retry-After")
            )
        return error


def artifact_root(artifact_uri: str, server_url: str) -> str:
    """The path under the proxied artifact API of a run's `mlflow-artifacts:` URI.

    Raises:
        RemoteError: the server keeps artifacts somewhere it does not proxy.
    """
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        return parsed.path.strip("/")
    raise RemoteError(
        f"The tracking server at {server_url} gives runs the artifact location "
        f"{artifact_uri!r}, which it does not serve itself, so mltrail cannot upload or "
        "read artifacts through it. Start the server with `--serve-artifacts` (the default; "
        "remove `--no-serve-artifacts` and `--default-artifact-root`) and an "
        "`--artifacts-destination`",
        error_code="ARTIFACTS_NOT_SERVED",
    )
