"""`mltrail models list` and `mltrail models show NAME`: the model registry from a terminal.

Registered through `add_models_commands(subparsers)`, like every command group
of `mltrail.cli`; the table helpers come from there, imported when a command
runs (the two modules import each other).
"""

from __future__ import annotations

import argparse
from typing import Any

from .client import TrackingClient
from .entities import ModelVersion, RegisteredModel
from .uri import redact_uri

DEFAULT_LIMIT = 100
MAX_VERSIONS_SHOWN = 50


def _stages(model: RegisteredModel) -> str:
    """`Production: 3, Staging: 4` from the newest version of each stage."""
    parts = [
        f"{mv.current_stage}: {mv.version}"
        for mv in model.latest_versions
        if mv.current_stage != "None"
    ]
    return ", ".join(parts) or "-"


def _latest(model: RegisteredModel) -> str:
    versions = [int(mv.version) for mv in model.latest_versions]
    return str(max(versions)) if versions else "-"


def _aliases(aliases: dict[str, str]) -> str:
    return ", ".join(f"@{a} -> {v}" for a, v in sorted(aliases.items())) or "-"


def cmd_models_list(args: argparse.Namespace) -> int:
    from .cli import format_time, render_table

    client = TrackingClient(args.tracking_uri)
    page = client.search_registered_models(args.filter, args.limit)
    print(f"Registered models at {redact_uri(client.tracking_uri)}\n")
    if not page:
        print("No registered models match." if args.filter else "No registered models yet.")
        return 0
    rows = [
        [m.name, _latest(m), _stages(m), _aliases(m.aliases), format_time(m.last_updated_timestamp)]
        for m in page
    ]
    print(render_table(["NAME", "LATEST", "STAGES", "ALIASES", "UPDATED"], rows, right=[1]))
    more = " (more match: raise --limit)" if page.token else ""
    print(f"\n{len(page)} model(s){more}. Details: mltrail models show <NAME>")
    return 0


def _all_versions(client: TrackingClient, name: str) -> list[ModelVersion]:
    quoted = f"'{name}'" if "'" not in name else f'"{name}"'
    versions: list[ModelVersion] = []
    token: str | None = None
    for _ in range(100):  # bounded paging
        page = client.search_model_versions(
            f"name = {quoted}", 1000, ["version_number DESC"], token
        )
        versions.extend(mv for mv in page if mv.name == name)
        token = page.token
        if not token:
            break
    return sorted(versions, key=lambda mv: -int(mv.version))


def cmd_models_show(args: argparse.Namespace) -> int:
    from .cli import _clip, format_time, render_table

    client = TrackingClient(args.tracking_uri)
    model = client.get_registered_model(args.name)
    facts: list[tuple[str, str]] = [
        ("name", model.name),
        ("description", model.description or "-"),
        ("created", format_time(model.creation_timestamp)),
        ("updated", format_time(model.last_updated_timestamp)),
        ("aliases", _aliases(model.aliases)),
    ]
    facts.extend((f"tag {k}", v) for k, v in sorted(model.tags.items()))
    width = max(len(k) for k, _ in facts)
    print(f"Registered model {model.name}")
    print("\n".join(f"  {k.ljust(width)}  {v}" for k, v in facts))
    versions = _all_versions(client, model.name)
    print(f"\nVersions ({len(versions)})")
    if not versions:
        print("  (none)")
        return 0
    rows = [
        [
            mv.version,
            mv.current_stage,
            ", ".join(f"@{a}" for a in mv.aliases) or "-",
            mv.run_id[:8] or "-",
            format_time(mv.creation_timestamp),
            _clip(mv.source, 48),
            _clip(mv.description, 40) or "-",
        ]
        for mv in versions[:MAX_VERSIONS_SHOWN]
    ]
    headers = ["VERSION", "STAGE", "ALIASES", "RUN ID", "CREATED", "SOURCE", "DESCRIPTION"]
    print(render_table(headers, rows, right=[0]))
    if len(versions) > MAX_VERSIONS_SHOWN:
        print(f"... and {len(versions) - MAX_VERSIONS_SHOWN} older version(s)")
    print(f"\nLoad one: mltrail.pyfunc.load_model('models:/{model.name}/<VERSION>')")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_models_commands(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="list and show registered models")
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    listing = sub.add_parser(
        "list",
        help="registered models with their latest version, stages and aliases",
        description="List the model registry of the tracking URI (a local folder or an "
        "MLflow server).",
    )
    listing.add_argument("--filter", "-f", metavar="FILTER", help="e.g. \"name LIKE 'nyc%%'\"")
    listing.add_argument(
        "--limit",
        "-n",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        help=f"at most this many models (default {DEFAULT_LIMIT})",
    )
    listing.set_defaults(handler=cmd_models_list)

    show = sub.add_parser(
        "show",
        help="one registered model and its versions",
        description="Show a registered model: description, aliases, tags and every version "
        "with its stage, aliases and source run.",
    )
    show.add_argument("name", metavar="NAME")
    show.set_defaults(handler=cmd_models_show)
