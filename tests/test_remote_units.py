"""Parts of the remote store that need no server: addresses, settings, encoding, journals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mltrail.exceptions import InvalidParameterError
from mltrail.stores.remote.http import HttpSession, RemoteSettings, public_url
from mltrail.stores.remote.shipper import read_journal
from mltrail.stores.remote.spool import folder_name, unsent_bytes
from mltrail.stores.remote.wire import encode_json


def test_spool_folder_and_printed_address_never_hold_credentials() -> None:
    uri = "https://alice:s3cret-pw@mlflow.example.com:8443/team/"
    assert public_url(uri) == "https://mlflow.example.com:8443/team"
    name = folder_name(public_url(uri))
    assert name == "https_mlflow.example.com_8443_team"
    assert "s3cret" not in name and "alice" not in name
    assert folder_name("http://127.0.0.1:5000") == "http_127.0.0.1_5000"
    assert folder_name("https://host") == "https_host_443"


def test_credentials_in_the_uri_are_used_and_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    session = HttpSession("http://bob:hunter2-pw@127.0.0.1:1/")
    assert session.base_url == "http://127.0.0.1:1"
    assert session.auth_kind.startswith("Basic")
    assert session.scrub("echo hunter2-pw back") == "echo *** back"


def test_basic_auth_wins_over_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-123")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-456")
    session = HttpSession("http://127.0.0.1:1")
    assert session.auth_kind == "Basic (user 'ana')"
    text = session.scrub("pw-123 tok-456 ana:pw-123")
    assert "pw-123" not in text


def test_insecure_tls_and_a_ca_bundle_together_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ssl/ca.pem")
    with pytest.raises(InvalidParameterError, match="MLFLOW_TRACKING_INSECURE_TLS"):
        HttpSession("https://127.0.0.1:1")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLTRAIL_HTTP_TIMEOUT", "7.5")
    monkeypatch.setenv("MLTRAIL_HTTP_RETRIES", "9")
    monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("MLTRAIL_HTTP_BACKOFF_MAX", "not-a-number")
    settings = RemoteSettings.from_env(create_timeout=0.5)
    assert settings.timeout == 7.5 and settings.retries == 9
    assert settings.spool_dir == tmp_path
    assert settings.backoff_max == RemoteSettings.backoff_max  # a bad value falls back
    assert settings.create_timeout == 0.5
    delays = [settings.backoff_delay(n) for n in range(12)]
    assert all(0 < d <= settings.backoff_max for d in delays)
    assert settings.retry_after_delay(3600) == 60.0


def test_non_finite_metrics_travel_as_strings() -> None:
    payload = {"metrics": [{"value": math.nan}, {"value": math.inf}, {"value": -math.inf}]}
    decoded = json.loads(encode_json(payload))
    assert [m["value"] for m in decoded["metrics"]] == ["NaN", "Infinity", "-Infinity"]
    assert json.loads(encode_json({"v": 1.5, "s": "é"})) == {"v": 1.5, "s": "é"}


def test_journal_reader_gives_offsets_and_skips_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    lines = [b'{"k":"b","p":{"a":"1"}}\n', b'{"k":"u","status":"FINISHED"}\n']
    path.write_bytes(b"".join(lines) + b'{"k":"b","m":[["lo')  # a crash mid-write
    records = list(read_journal(path, 0))
    assert [r["k"] for r, _ in records] == ["b", "u"]
    assert [end for _, end in records] == [len(lines[0]), len(lines[0]) + len(lines[1])]
    assert list(read_journal(path, records[0][1])) == [records[1]]
    assert not unsent_bytes(tmp_path, records[1][1])  # the torn tail is not a record
    assert unsent_bytes(tmp_path, 0)
