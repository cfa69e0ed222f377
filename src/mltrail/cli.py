"""The `mltrail` command: look at runs and experiments from a terminal, and run the demo.

Each command group registers itself through a small `add_<group>_commands(subparsers)`
function listed in `COMMAND_GROUPS`; a new group (`sync`, `doctor`, `models`, ...) is one
such function plus one line in that list. A handler receives the parsed arguments and
returns the exit code. mltrail's own errors become one line on stderr and exit code 1:
a traceback would bury the message a user needs (an unknown run id, a bad filter).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, search
from . import cli_output as output
from .client import TrackingClient
from .entities import Experiment, FileInfo, Run, RunStatus, ViewType
from .exceptions import InvalidParameterError, MltrailError, NotFoundError
from .model_commands import add_models_commands
from .stores.remote.doctor import add_doctor_command
from .stores.remote.sync import add_sync_command
from .ui import add_ui_command
from .uri import redact_uri

PARENT_TAG = "mlflow.parentRunId"
SYSTEM_TAG_PREFIX = "mlflow."
SHORT_ID = 8
DEFAULT_LIMIT = 100
MAX_METRIC_COLUMNS = 4
MAX_ARTIFACTS_SHOWN = 200

Subparsers = Any  # argparse's _SubParsersAction is private; keep it out of signatures


# formatting ----------------------------------------------------------------


def _tree_marker() -> str:
    """A box-drawing branch where the terminal can print it, ASCII elsewhere."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "└─".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "\\_ "
    return "└─ "


def format_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def format_duration(run: Run) -> str:
    """Wall time of a run; an unfinished one shows how long it has been running."""
    info = run.info
    if not info.start_time:
        return "-"
    end = info.end_time
    if end is None:
        if RunStatus.is_terminated(info.status):
            return "-"
        end = int(time.time() * 1000)
    seconds = max(0.0, (end - info.start_time) / 1000)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell; columns listed in `right` align right."""
    right_cols = set(right)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right_cols else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def _records_table(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Records as a table of `columns`: times readable, numbers right-aligned."""
    rows = []
    for record in records:
        row = []
        for column in columns:
            value = record.get(column)
            if column in ("start_time", "end_time", "creation_time"):
                row.append(format_time(value))
            else:
                row.append(_clip(format_value(value), 40))
        rows.append(row)
    right = [i for i, c in enumerate(columns)
             if c.startswith("metrics.") or c == "duration_s"]
    return render_table([c.upper() if "." not in c else c for c in columns], rows, right)


def _print_records(args: argparse.Namespace, records: Sequence[dict[str, Any]],
                   nested: Sequence[dict[str, Any]] | None = None) -> None:
    """Print records as JSON or CSV (`--format`), restricted to `--columns` if given."""
    wanted = output.parse_columns(getattr(args, "columns", None))
    columns = output.choose_columns(records, wanted) if wanted else output.all_columns(records)
    if args.format == "json":
        if not wanted and nested is not None:
            print(output.dump_json(list(nested)))
        else:
            print(output.dump_json([{c: r.get(c) for c in columns} for r in records]))
    else:
        print(output.dump_csv(records, columns))


def _add_format_options(parser: argparse.ArgumentParser, columns: bool = True) -> None:
    parser.add_argument("--format", choices=output.FORMATS, default="table",
                        help="table (default), json or csv, for programs")
    if columns:
        parser.add_argument(
            "--columns", metavar="COLS", action="append",
            help="comma-separated columns, patterns allowed: run_id,name,status,start_time,"
                 "duration_s,params.*,metrics.loss (repeatable)")


# lookups -------------------------------------------------------------------


def _client(args: argparse.Namespace) -> TrackingClient:
    return TrackingClient(args.tracking_uri)


def _store_missing(client: TrackingClient) -> bool:
    """A local store whose folder does not exist yet: reading it would create it."""
    root = getattr(client.store, "root", None)
    return isinstance(root, Path) and not root.exists()


def resolve_experiment(client: TrackingClient, name_or_id: str) -> Experiment:
    """An experiment by exact name, else by id, so `--experiment 3` and names both work."""
    found = client.get_experiment_by_name(name_or_id)
    if found is not None:
        return found
    try:
        return client.get_experiment(name_or_id)
    except NotFoundError:
        raise NotFoundError(
            f"No experiment named or numbered {name_or_id!r}; see `mltrail experiments list`",
            resource_id=name_or_id,
        ) from None


def _iter_runs(
    client: TrackingClient, experiment_ids: list[str], view_type: int = ViewType.ALL
) -> Iterable[Run]:
    token: str | None = None
    while True:
        page = client.search_runs(experiment_ids, "", view_type, 1000, None, token)
        yield from page
        token = page.token
        if not token:
            return


def resolve_run_id(client: TrackingClient, text: str) -> str:
    """A full run id from a full id or the short prefix `runs list` prints.

    Raises:
        NotFoundError: no run id starts with `text`.
        InvalidParameterError: several do; the message lists them.
    """
    prefix = text.strip().lower()
    if len(prefix) == 32:
        return prefix
    if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFoundError(
            f"{text!r} is not a run id: give the 32-character id or at least its first 4 "
            "characters",
            resource_id=text,
        )
    experiment_ids = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
    matches = sorted(
        {
            r.info.run_id
            for r in _iter_runs(client, experiment_ids)
            if r.info.run_id.startswith(prefix)
        }
    )
    if not matches:
        raise NotFoundError(f"No run id starts with {text!r}", resource_id=text)
    if len(matches) > 1:
        raise InvalidParameterError(
            f"Run id prefix {text!r} is ambiguous: {', '.join(matches[:5])}"
            + (" ..." if len(matches) > 5 else ""),
            key=text,
        )
    return matches[0]


def _default_experiment(client: TrackingClient) -> Experiment | None:
    """The experiment `runs list` shows when none is named: the environment's, else the
    one holding the most recently started run (so right after `mltrail demo`, its runs)."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"])
    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return resolve_experiment(client, os.environ["MLFLOW_EXPERIMENT_NAME"])
    experiments = client.search_experiments(ViewType.ACTIVE_ONLY)
    if not experiments:
        return None
    latest = client.search_runs(
        [e.experiment_id for e in experiments],
        "",
        ViewType.ACTIVE_ONLY,
        1,
        ["attributes.start_time DESC"],
    )
    if not latest:
        return None
    wanted = latest[0].info.experiment_id
    return next(e for e in experiments if e.experiment_id == wanted)


# runs ----------------------------------------------------------------------


def _metric_columns(runs: Sequence[Run], order_by: Sequence[str]) -> list[str]:
    """Metrics sorted on come first, then the keys most runs have."""
    wanted: list[str] = []
    for order_key in search.parse_order_by(order_by):  # the search has accepted them already
        if order_key.kind == "metric" and order_key.key not in wanted:
            wanted.append(order_key.key)
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.data.metrics:
            counts[key] = counts.get(key, 0) + 1
    for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if key not in wanted:
            wanted.append(key)
    return wanted[:MAX_METRIC_COLUMNS]


def order_as_tree(runs: Sequence[Run]) -> list[tuple[int, Run]]:
    """Runs in their listed order with each child right under its parent, with depths.

    A child whose parent is not in the list stays where it was, at depth 0.
    """
    listed = {run.info.run_id for run in runs}
    children: dict[str, list[Run]] = {}
    roots: list[Run] = []
    for run in runs:
        parent = run.data.tags.get(PARENT_TAG)
        if parent and parent in listed and parent != run.info.run_id:
            children.setdefault(parent, []).append(run)
        else:
            roots.append(run)
    ordered: list[tuple[int, Run]] = []
    seen: set[str] = set()

    def visit(run: Run, depth: int) -> None:
        if run.info.run_id in seen:  # a tag cycle must not loop forever
            return
        seen.add(run.info.run_id)
        ordered.append((depth, run))
        for child in children.get(run.info.run_id, []):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    for run in runs:  # runs caught in a parent cycle, never reached from a root
        if run.info.run_id not in seen:
            visit(run, 0)
    return ordered


def runs_table(runs: Sequence[Run], order_by: Sequence[str] = ()) -> str:
    metric_keys = _metric_columns(runs, order_by)
    marker = _tree_marker()
    rows = []
    for depth, run in order_as_tree(runs):
        name = run.info.run_name or run.data.tags.get("mlflow.runName", "")
        if depth:
            name = "   " * (depth - 1) + marker + name
        rows.append(
            [
                run.info.run_id[:SHORT_ID],
                _clip(name, 48),
                run.info.status,
                format_time(run.info.start_time),
                format_duration(run),
                *[format_value(run.data.metrics.get(key)) for key in metric_keys],
            ]
        )
    headers = ["RUN ID", "NAME", "STATUS", "STARTED", "DURATION", *metric_keys]
    right = range(4, 5 + len(metric_keys))
    return render_table(headers, rows, right)


def _say_empty(args: argparse.Namespace, message: str) -> None:
    """Nothing to list: a sentence for people, an empty list (or header) for programs."""
    if args.format == "json":
        print("[]")
    elif args.format == "csv":
        print(output.dump_csv([], output.parse_columns(getattr(args, "columns", None))))
    else:
        print(message)


def cmd_runs_list(args: argparse.Namespace) -> int:
    client = _client(args)
    if _store_missing(client) and args.experiment is None:
        _say_empty(args, f"No runs yet in {redact_uri(client.tracking_uri)}. "
                         "Try `mltrail demo`.")
        return 0
    if args.all_experiments:
        experiments = client.search_experiments(ViewType.ACTIVE_ONLY)
        title = f"All experiments ({len(experiments)})"
    elif args.experiment is not None:
        experiments = [resolve_experiment(client, args.experiment)]
        title = f"Experiment {experiments[0].name!r} (id {experiments[0].experiment_id})"
    else:
        found = _default_experiment(client)
        if found is None:
            _say_empty(args, f"No runs yet in {redact_uri(client.tracking_uri)}. "
                             "Try `mltrail demo`.")
            return 0
        experiments = [found]
        title = (
            f"Experiment {found.name!r} (id {found.experiment_id}), the most recent; "
            "choose with --experiment or --all-experiments"
        )
    view = ViewType.ALL if args.deleted else ViewType.ACTIVE_ONLY
    order_by = list(args.order_by or [])
    page = client.search_runs(
        [e.experiment_id for e in experiments], args.filter or "", view, args.limit, order_by
    )
    if args.format != "table":
        _print_records(args, [output.run_record(r) for r in page],
                       [output.run_nested(r) for r in page])
        return 0
    print(f"{title}\nat {redact_uri(client.tracking_uri)}\n")
    if not page:
        print("No runs match." if args.filter else "No runs.")
        return 0
    wanted = output.parse_columns(args.columns)
    if wanted:
        records = [output.run_record(r) for _, r in order_as_tree(list(page))]
        print(_records_table(records, output.choose_columns(records, wanted)))
    else:
        print(runs_table(list(page), order_by))
    more = " (more match: raise --limit)" if page.token else ""
    print(f"\n{len(page)} run(s){more}. Details: mltrail runs show <RUN ID>")
    return 0


def _section(title: str, body: str) -> str:
    return f"\n{title}\n{body}" if body else f"\n{title}\n  (none)"


def _pairs(items: Iterable[tuple[str, str]]) -> str:
    items = list(items)
    if not items:
        return ""
    width = min(max(len(k) for k, _ in items), 40)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in items)


def _walk_artifacts(client: TrackingClient, run_id: str) -> list[FileInfo]:
    """Every file and folder under the run's artifacts, depth first, bounded."""
    found: list[FileInfo] = []
    pending: list[str | None] = [None]
    while pending and len(found) < MAX_ARTIFACTS_SHOWN:
        folder = pending.pop()
        entries = client.list_artifacts(run_id, folder)
        for entry in reversed(entries):
            if entry.is_dir:
                pending.append(entry.path)
        found.extend(entries)
    return sorted(found, key=lambda f: f.path)[:MAX_ARTIFACTS_SHOWN]


def _size(num: int | None) -> str:
    if num is None:
        return ""
    size = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{num} B"


def _show_metric(args: argparse.Namespace, client: TrackingClient, run: Run) -> int:
    """One metric's history: steps, values and a sparkline."""
    history = client.get_metric_history(run.info.run_id, args.metric)
    if not history:
        known = ", ".join(sorted(run.data.metrics)) or "none"
        raise NotFoundError(f"Run {run.info.run_id} has no metric {args.metric!r} "
                            f"(its metrics: {known})", resource_id=args.metric)
    records = output.history_records(history)
    if args.format == "json":
        print(output.dump_json({"run_id": run.info.run_id, "key": args.metric,
                                "history": records}))
        return 0
    if args.format == "csv":
        print(output.dump_csv(records, ["step", "value", "timestamp"]))
        return 0
    values = [r["value"] for r in records]
    finite = [v for v in values if math.isfinite(v)]
    span = f", min {format_value(min(finite))}, max {format_value(max(finite))}" if finite else ""
    print(f"Metric {args.metric!r} of run {run.info.run_id}: {len(values)} point(s){span}")
    print(f"  {output.sparkline(values)}\n")
    rows = [[str(r["step"]), format_value(r["value"]), format_time(r["timestamp"])]
            for r in records]
    print(render_table(["STEP", "VALUE", "TIME"], rows, right=(0, 1)))
    return 0


def _show_records(client: TrackingClient, run: Run) -> tuple[dict[str, Any], list[list[str]]]:
    """The run as nested JSON, and as section/key/value rows for CSV."""
    artifacts = _walk_artifacts(client, run.info.run_id)
    datasets = [
        {"name": i.dataset.name, "digest": i.dataset.digest, "source_type": i.dataset.source_type,
         "context": {t.key: t.value for t in i.tags}.get("mlflow.data.context", "")}
        for i in run.inputs.dataset_inputs
    ]
    nested = {**output.run_nested(run), "datasets": datasets,
              "artifacts": [{"path": f.path, "is_dir": f.is_dir, "file_size": f.file_size}
                            for f in artifacts]}
    rows = [["info", k, v] for k, v in nested.items()
            if k not in ("params", "metrics", "tags", "datasets", "artifacts")]
    for section in ("params", "metrics", "tags"):
        rows += [[section, k, v] for k, v in sorted(nested[section].items())]
    rows += [["artifacts", f.path, f.file_size] for f in artifacts if not f.is_dir]
    return nested, rows


def cmd_runs_show(args: argparse.Namespace) -> int:
    client = _client(args)
    run = client.get_run(resolve_run_id(client, args.run_id))
    if args.metric:
        return _show_metric(args, client, run)
    if args.format != "table":
        nested, rows = _show_records(client, run)
        if args.format == "json":
            print(output.dump_json(nested))
        else:
            records = [dict(zip(("section", "key", "value"), r, strict=True)) for r in rows]
            print(output.dump_csv(records, ["section", "key", "value"]))
        return 0
    info = run.info
    try:
        experiment = client.get_experiment(info.experiment_id)
        exp_label = f"{experiment.name} (id {info.experiment_id})"
    except NotFoundError:
        exp_label = info.experiment_id
    facts = [
        ("run id", info.run_id),
        ("name", info.run_name),
        ("experiment", exp_label),
        ("status", info.status + ("" if info.lifecycle_stage == "active" else " (deleted)")),
        ("user", info.user_id),
        ("started", format_time(info.start_time)),
        ("ended", format_time(info.end_time)),
        ("duration", format_duration(run)),
        ("artifact uri", info.artifact_uri),
    ]
    if PARENT_TAG in run.data.tags:
        facts.append(("parent run", run.data.tags[PARENT_TAG]))
    out = [f"Run {info.run_id}", _pairs(facts)]
    out.append(_section("Params", _pairs(sorted(run.data.params.items()))))
    metrics = sorted((k, format_value(v)) for k, v in run.data.metrics.items())
    out.append(_section("Metrics (latest)", _pairs(metrics)))
    user_tags = sorted(
        (k, v) for k, v in run.data.tags.items() if not k.startswith(SYSTEM_TAG_PREFIX)
    )
    system_tags = sorted(
        (k, v) for k, v in run.data.tags.items() if k.startswith(SYSTEM_TAG_PREFIX)
    )
    out.append(_section("Tags", _pairs((k, _clip(v, 200)) for k, v in user_tags)))
    out.append(_section("System tags", _pairs((k, _clip(v, 200)) for k, v in system_tags)))
    if run.inputs.dataset_inputs:
        datasets = []
        for item in run.inputs.dataset_inputs:
            context = {t.key: t.value for t in item.tags}.get("mlflow.data.context", "")
            label = f"{item.dataset.name} (digest {item.dataset.digest})"
            datasets.append((label, context))
        out.append(_section("Datasets", _pairs(datasets)))
    artifacts = _walk_artifacts(client, info.run_id)
    lines = [
        f"  {f.path}{'/' if f.is_dir else ''}{'  ' + _size(f.file_size) if not f.is_dir else ''}"
        for f in artifacts
    ]
    out.append(_section("Artifacts", "\n".join(lines)))
    print("\n".join(out))
    return 0


def _children_sorted(client: TrackingClient, args: argparse.Namespace) -> list[Run]:
    """Every child run of `--children PARENT`, best first by the search's objective (its
    loss; see `report.data.searches_from_runs`) or by `--sort-by`; runs without it last."""
    from .report.data import RunRow, searches_from_runs, with_children

    parent = client.get_run(resolve_run_id(client, args.children))
    family = with_children(client, [parent])
    children = family[1:]
    if not children:
        raise NotFoundError(f"Run {parent.info.run_id} has no child runs",
                            resource_id=parent.info.run_id)
    key, descending = args.sort_by, False
    if key is None:
        rows = [RunRow.from_run(r) for r in family]
        found = searches_from_runs(rows) if len(children) > 1 else []
        if found:
            key, descending = found[0].objective, found[0].direction == "maximize"
        else:
            key = "loss"

    def order(run: Run) -> tuple[bool, float]:
        value = run.data.metrics.get(key)
        if value is None or math.isnan(value):
            return (True, 0.0)
        return (False, -value if descending else value)

    args.sorted_by = f"{key} ({'highest' if descending else 'lowest'} first)"
    return sorted(children, key=order)


def cmd_runs_compare(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.children:
        runs = _children_sorted(client, args)
    elif args.run_ids:
        runs = [client.get_run(resolve_run_id(client, text)) for text in args.run_ids]
    else:
        raise InvalidParameterError("Give RUN_IDs to compare, or --children PARENT",
                                    key="run_ids")
    if args.format != "table" or args.children:
        records = [output.run_record(r) for r in runs]
        if args.format != "table":
            _print_records(args, records, [output.run_nested(r) for r in runs])
            return 0
        wanted = output.parse_columns(args.columns)
        if not wanted:  # what tells the children apart: the params that vary, the metrics
            varying = [k for k in output.all_columns(records) if k.startswith("params.")
                       and len({str(r.get(k)) for r in records}) > 1]
            wanted = ["run_id", "name", "status", *varying, "metrics.*"]
        columns = output.choose_columns(records, wanted)
        print(f"{len(runs)} child run(s) of {args.children}, sorted by {args.sorted_by}\n")
        print(_records_table(records, columns))
        return 0
    wanted = output.parse_columns(args.columns)
    if wanted:
        records = [output.run_record(r) for r in runs]
        columns = output.choose_columns(records, wanted)
        headers = ["", *[f"{r.info.run_id[:SHORT_ID]} {_clip(r.info.run_name, 24)}"
                         for r in runs]]
        print(render_table(headers, [[c, *[_clip(format_value(rec.get(c)), 30)
                                           for rec in records]] for c in columns]))
        return 0
    headers = ["", *[f"{r.info.run_id[:SHORT_ID]} {_clip(r.info.run_name, 24)}" for r in runs]]
    rows: list[list[str]] = [
        ["status", *[r.info.status for r in runs]],
        ["started", *[format_time(r.info.start_time) for r in runs]],
        ["duration", *[format_duration(r) for r in runs]],
    ]
    param_keys = sorted({k for r in runs for k in r.data.params})
    differing = 0
    for key in param_keys:
        values = [r.data.params.get(key) for r in runs]
        mark = "* " if len(set(values)) > 1 else "  "
        differing += mark == "* "
        rows.append(
            [f"{mark}params.{key}", *[_clip(v if v is not None else "-", 30) for v in values]]
        )
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    for key in metric_keys:
        cells = [format_value(r.data.metrics[key]) if key in r.data.metrics else "-" for r in runs]
        rows.append([f"  metrics.{key}", *cells])
    print(render_table(headers, rows))
    print(f"\n* marks the {differing} param(s) whose values differ between runs.")
    return 0


def add_runs_commands(subparsers: Subparsers) -> None:
    runs = subparsers.add_parser("runs", help="list, show and compare runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    listing = sub.add_parser(
        "list",
        help="a table of runs, children indented under their parent",
        description="List runs as a table; child runs (tag mlflow.parentRunId) are indented "
        "under their parent. Without --experiment, shows the experiment of the most "
        "recently started run (or the one named by MLFLOW_EXPERIMENT_NAME/_ID).",
    )
    listing.add_argument("--experiment", "-e", metavar="NAME_OR_ID", help="experiment name or id")
    listing.add_argument(
        "--all-experiments", action="store_true", help="runs of every active experiment"
    )
    listing.add_argument(
        "--filter",
        "-f",
        metavar="FILTER",
        help="MLflow filter, e.g. \"metrics.rmse < 7 and params.alpha = '0.01'\"",
    )
    listing.add_argument(
        "--order-by",
        "-o",
        metavar="KEY",
        nargs="+",
        action="extend",
        help="e.g. 'metrics.rmse ASC' 'attributes.start_time DESC' (default: newest first)",
    )
    listing.add_argument(
        "--limit",
        "-n",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        help=f"at most this many runs (default {DEFAULT_LIMIT})",
    )
    listing.add_argument("--deleted", action="store_true", help="include deleted runs")
    _add_format_options(listing)
    listing.set_defaults(handler=cmd_runs_list)

    show = sub.add_parser(
        "show",
        help="one run: info, params, metrics, tags, artifacts",
        description="Show one run. RUN_ID may be the short id `runs list` prints.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--metric", metavar="KEY",
                      help="this metric's history instead: steps, values and a sparkline")
    _add_format_options(show, columns=False)
    show.set_defaults(handler=cmd_runs_show)

    compare = sub.add_parser(
        "compare",
        help="params and metrics of several runs side by side",
        description="Compare runs side by side; params whose values differ are marked *. "
        "With --children PARENT: every child of a search, a row each, best first.",
    )
    compare.add_argument("run_ids", metavar="RUN_ID", nargs="*")
    compare.add_argument("--children", metavar="PARENT",
                         help="compare every child run of this run (a search's trials)")
    compare.add_argument("--sort-by", metavar="METRIC",
                         help="with --children: sort by this metric, lowest first (default: "
                              "the search's objective: loss, value, mean_test_score)")
    _add_format_options(compare)
    compare.set_defaults(handler=cmd_runs_compare)


# experiments ---------------------------------------------------------------


def cmd_experiments_list(args: argparse.Namespace) -> int:
    client = _client(args)
    if _store_missing(client):
        _say_empty(args, f"No experiments yet in {redact_uri(client.tracking_uri)}. "
                         "Try `mltrail demo`.")
        return 0
    view = ViewType.ALL if args.deleted else ViewType.ACTIVE_ONLY
    experiments = client.search_experiments(view)
    if args.format != "table":
        _print_records(args, [output.experiment_record(e) for e in experiments])
        return 0
    rows = [
        [
            e.experiment_id,
            e.name,
            e.lifecycle_stage,
            format_time(e.creation_time),
            e.artifact_location,
        ]
        for e in experiments
    ]
    print(f"Experiments at {redact_uri(client.tracking_uri)}\n")
    print(render_table(["ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"], rows))
    return 0


def add_experiments_commands(subparsers: Subparsers) -> None:
    experiments = subparsers.add_parser("experiments", help="list experiments")
    sub = experiments.add_subparsers(dest="experiments_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="every experiment with its id")
    listing.add_argument("--deleted", action="store_true", help="include deleted experiments")
    _add_format_options(listing, columns=False)
    listing.set_defaults(handler=cmd_experiments_list)


# report --------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from . import report  # reads plotly.js only now; `mltrail runs ...` never does

    client = _client(args)
    try:
        report.plotly_js()
    except report.ReportUnavailable as exc:
        raise MltrailError(f"{exc.message}. Without it, `mltrail runs list` and "
                           "`mltrail runs compare --children` show runs in the terminal") from None
    runs: list[Run] = []
    experiment_ids: list[str] = []
    if args.runs:
        runs = [client.get_run(resolve_run_id(client, text)) for text in args.runs]
        title = args.title or f"mltrail report: {len(runs)} run(s)"
    else:
        if args.experiment is not None:
            experiment = resolve_experiment(client, args.experiment)
        else:
            found = None if _store_missing(client) else _default_experiment(client)
            if found is None:
                print(f"No runs yet in {redact_uri(client.tracking_uri)}. Try `mltrail demo`.")
                return 1
            experiment = found
        experiment_ids = [experiment.experiment_id]
        title = args.title or f"mltrail report: experiment {experiment.name!r}"
    started = time.perf_counter()
    page = report.build_report(client, experiment_ids=experiment_ids, runs=runs, title=title,
                               max_detail_runs=args.max_detail_runs, output=args.output)
    seconds = time.perf_counter() - started
    target = Path(args.output).resolve()
    print(f"Wrote {target} ({len(page.encode()) / 1e6:.1f} MB, {seconds:.1f} s); open it in a "
          f"browser: {target.as_uri()}")
    return 0


def add_report_command(subparsers: Subparsers) -> None:
    cmd = subparsers.add_parser(
        "report",
        help="one self-contained HTML file: runs, charts, every search",
        description="Write one HTML file that opens offline (plotly.js embedded): the run "
        "table with its tree, params against metrics, per-step curves, and for each search "
        "its optimization history, slices and parameter importance. Needs "
        "`pip install 'mltrail[report]'`.",
    )
    cmd.add_argument("--experiment", "-e", metavar="NAME_OR_ID",
                     help="experiment to report (default: the most recent, as `runs list`)")
    cmd.add_argument("--runs", metavar="RUN_ID", nargs="+",
                     help="report these runs (and their child runs) instead")
    cmd.add_argument("--output", "-o", default="report.html", help="file to write "
                     "(default report.html)")
    cmd.add_argument("--title", help="the page's heading")
    cmd.add_argument("--max-detail-runs", type=_positive_int, default=200, metavar="N",
                     help="read per-step curves and plot data of the N newest runs "
                          "(default 200; one request per run and metric on a server)")
    cmd.set_defaults(handler=cmd_report)


# demo ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # imports scikit-learn: only when the demo runs

    run_demo(tracking_uri=args.tracking_uri, experiment_name=args.experiment)
    return 0


def add_demo_command(subparsers: Subparsers) -> None:
    from .demo import DEMO_EXPERIMENT

    demo = subparsers.add_parser(
        "demo",
        help="train small scikit-learn models and log their runs",
        description="Train a few scikit-learn models on data shipped with scikit-learn "
        "(wine, diabetes), log their runs, and print how to look at them.",
    )
    demo.add_argument(
        "--experiment",
        default=DEMO_EXPERIMENT,
        help=f"experiment to log into (default {DEMO_EXPERIMENT!r})",
    )
    demo.set_defaults(handler=cmd_demo)


# the command ---------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# To add a command group, write `add_<group>_commands(subparsers)` and list it here.
COMMAND_GROUPS: list[Callable[[Subparsers], None]] = [
    add_runs_commands,
    add_experiments_commands,
    add_models_commands,
    add_report_command,
    add_ui_command,
    add_demo_command,
    add_sync_command,
    add_doctor_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mltrail",
        description="Look at the runs mltrail logged, locally or on an MLflow tracking server.",
        epilog="Start with `mltrail demo`, then `mltrail runs list`. The tracking URI is "
        "--tracking-uri, else MLTRAIL_TRACKING_URI, else MLFLOW_TRACKING_URI, else "
        "./mltrail-runs.",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help=("a folder, file: URI, http(s):// MLflow server or sqlite:/// (postgresql://, "
              "mysql://) database (default: see below)"),
    )
    parser.add_argument("--version", action="version", version=f"mltrail {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(subparsers)
    _accept_uri_everywhere(parser)
    return parser


def _accept_uri_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let `--tracking-uri` also follow the command (`mltrail runs list --tracking-uri X`),
    for every command of every group, without each group having to declare it."""
    children = [
        child
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()
    ]
    if not children:
        if not any("--tracking-uri" in a.option_strings for a in parser._actions):
            parser.add_argument(
                "--tracking-uri",
                metavar="URI",
                default=argparse.SUPPRESS,
                help="where the runs are (same as the global option)",
            )
        return
    for child in children:
        _accept_uri_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    """Run the `mltrail` command; returns the exit code (console-script entry point)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except MltrailError as exc:
        print(f"mltrail: error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `mltrail runs list | head`: the reader left, nothing to say
        # Point stdout at devnull so the interpreter's final flush cannot fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("mltrail: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
