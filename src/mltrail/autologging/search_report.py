"""`log_search_report`: the page a search's parent run carries, built when the search ends.

Search integrations (hyperopt, Optuna, scikit-learn's searches) call it once, after the
last trial, with the trials as they know them: never on a trial's path, and without
reading the runs back from the store (which, against a server, may still be on their way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .session import Session

if TYPE_CHECKING:
    from ..report import SearchTrial

SEARCH_REPORT_ARTIFACT = "search_report.html"


def log_search_report(
    session: Session,
    trials: Sequence[SearchTrial],
    *,
    objective: str,
    direction: str = "minimize",
    title: str | None = None,
) -> bool:
    """Log `search_report.html` on the session's run, unless `log_search_report=False`.

    Args:
        session: the search's session (its run is the search's parent run).
        trials: every trial of this search, as `mltrail.report.SearchTrial`.
        objective: the name of the value trials were judged on (`loss`, `value`, ...).
        direction: `minimize` or `maximize`.
        title: the page's heading (default: "<flavor> search <run id>").

    Returns:
        True when the report was logged. The page's charts are static SVG written by
        mltrail itself (`mltrail.report.search_page`): no extra is needed, and a failure
        to write it is a warning, never the search's error.
    """
    if not session.options.log_search_report or not trials:
        return False
    from .. import report  # only now: nothing of the report is loaded before a search ends

    def write() -> bool:
        search = report.SearchData(
            title=title or f"{session.flavor} search {session.run_id[:8]}",
            flavor=session.flavor, objective=objective, direction=direction,
            trials=list(trials), parent_run_id=session.run_id)
        page = report.render_search(search)
        with session.stage_artifacts() as folder:
            (folder / SEARCH_REPORT_ARTIFACT).write_text(page, encoding="utf-8")
        return True

    return bool(session.safe(f"log {SEARCH_REPORT_ARTIFACT}", write))
