"""XGBoost autologging for mltrail: every `xgboost.train`, `xgboost.cv` and wrapper fit is a run.

What one training call records:

- params: the booster params (a list value, such as several `eval_metric`s, as
  its list text), `num_boost_round`, `early_stopping_rounds`, `maximize`, and the
  names of a custom `obj`/`custom_metric`; for the scikit-learn wrappers
  (`XGBRegressor`, `XGBClassifier`, `XGBRanker`, `XGBRF*`) their `get_params()`;
- per-round metrics `<evalname>-<metric>` (`validation-rmse`), step = the booster's
  iteration (continuing from `xgb_model`'s rounds when training resumes), read
  from xgboost's evaluation log about once a second and when training ends or
  raises, and written in batches (the points of one batch share its timestamp);
  `@` in a metric name becomes `_at_` (`ndcg@5` -> `ndcg_at_5`) and other
  characters a tracking key cannot hold become `_`;
- with early stopping: `best_iteration`, `best_score`, `stopped_iteration`, and
  the best round's values as `best_<key>` (each per-round history keeps exactly
  one point per round);
- `feature_importance_<type>.json` for each of `importance_types`, and its bar chart
  `feature_importance_<type>.svg` (data in `plots.json`) unless `log_plots=False`;
- the model (`.ubj`) in MLflow's layout, loadable with `mltrail.xgboost.load_model`;
- a dataset input for the training data;
- for `xgboost.cv`: one run with `<evalname>-<metric>-mean` and `-std` per round.

A wrapper's fit and the `train` call inside it are one run. Code that bound
`train` to its own name before autolog was turned on (`from xgboost import
train`) calls the unpatched function and is not recorded.

Turn it on with `mltrail.autolog()` or `mltrail.xgboost.autolog(...)`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import mltrail.autologging as autologging

from .model import load_model, load_pyfunc, log_model, save_model

__all__ = ["INTEGRATION", "autolog", "load_model", "load_pyfunc", "log_model", "patch",
           "save_model"]


def autolog(
    disable: bool = False,
    exclusive: bool = False,
    log_models: bool = True,
    log_datasets: bool = True,
    log_plots: bool = True,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    disable_for_unsupported_versions: bool = False,
    importance_types: Sequence[str] = ("weight",),
) -> None:
    """Turn XGBoost autologging on (or off with `disable=True`).

    Args:
        disable: turn it off; patches stay installed but call straight through.
        exclusive: do not log into a run the user opened.
        log_models: log the trained Booster (or wrapper) as `model`.
        log_datasets: record the training data's name, digest, schema and shape.
        log_plots: draw each logged importance type as `feature_importance_<type>.svg`.
        silent: no warnings from mltrail's own logging problems.
        extra_tags: tags added to every run autolog creates.
        disable_for_unsupported_versions: stay off on xgboost versions outside the
            tested range instead of warning.
        importance_types: the `Booster.get_score` types logged as
            `feature_importance_<type>.json` (MLflow's default, `weight` only);
            empty for none.
    """
    if isinstance(importance_types, str):
        importance_types = (importance_types,)
    autologging.enable(
        sys.modules[__name__],
        disable=disable,
        exclusive=exclusive,
        log_models=log_models,
        log_datasets=log_datasets,
        log_plots=log_plots,
        silent=silent,
        extra_tags=extra_tags,
        disable_for_unsupported_versions=disable_for_unsupported_versions,
        importance_types=tuple(importance_types or ()),
    )


def patch(module: Any) -> None:
    """Install the patches once `xgboost` is imported."""
    from . import patches

    patches.patch_all(module)


INTEGRATION = autologging.Integration(
    flavor="xgboost",
    modules=("xgboost",),
    patch=patch,
    options={"importance_types": ("weight",)},
    supported={"xgboost": ("2.0", "4")},
    claims=("xgboost",),  # its sklearn wrappers are recorded here, not by the sklearn plugin
)
