"""xgboost behaviour that autolog must leave unchanged: callbacks, early stopping, cv,
wrapper fit with eval_set, continued training, pickling, deprecated positional args.

xgboost's Python test suite is not in its wheel, and its sdist (xgboost-3.2.0.tar.gz,
checked with ``pip download --no-binary :all:``) holds only the package and the C++
sources, no tests/python. So this module is ours: each test asserts what plain
xgboost does, and the ones named ``test_xgboost_testing_*`` call the test bodies
xgboost ships in ``xgboost.testing`` (the helpers its own tests/python use). Run by
tests/peer/run.py with autolog off and on; not collected by the default pytest run.
"""

from __future__ import annotations

import copy
import io
import pickle

import cloudpickle
import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, make_classification, make_regression
from xgboost.testing import callbacks as xgb_callbacks
from xgboost.testing import continuation as xgb_continuation
from xgboost.testing.basic_models import run_custom_objective

X, Y = make_classification(n_samples=200, n_features=8, random_state=0)
XR, YR = make_regression(n_samples=200, n_features=8, random_state=0)
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eval_metric": ["logloss", "error"]}


def _dmatrices():
    return xgb.DMatrix(X[:150], Y[:150]), xgb.DMatrix(X[150:], Y[150:])


class Recorder(xgb.callback.TrainingCallback):
    def __init__(self):
        self.before = []
        self.after = []
        self.began = 0
        self.ended = 0
        self.logs = []

    def before_training(self, model):
        self.began += 1
        return model

    def after_training(self, model):
        self.ended += 1
        return model

    def before_iteration(self, model, epoch, evals_log):
        self.before.append(epoch)
        return False

    def after_iteration(self, model, epoch, evals_log):
        self.after.append(epoch)
        self.logs.append({d: {m: list(v) for m, v in ms.items()} for d, ms in evals_log.items()})
        return False


def test_user_callback_sees_every_iteration():
    dtrain, dvalid = _dmatrices()
    rec = Recorder()
    result = {}
    bst = xgb.train(
        PARAMS,
        dtrain,
        num_boost_round=7,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=result,
        callbacks=[rec],
        verbose_eval=False,
    )
    assert rec.before == list(range(7)) and rec.after == list(range(7))
    assert (rec.began, rec.ended) == (1, 1)
    assert bst.num_boosted_rounds() == 7
    assert rec.logs[-1] == {d: {m: list(v) for m, v in ms.items()} for d, ms in result.items()}
    assert [len(log["valid"]["logloss"]) for log in rec.logs] == list(range(1, 8))
    assert set(result) == {"train", "valid"} and set(result["valid"]) == {"logloss", "error"}


def test_callback_stopping_training():
    class StopAt(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            return epoch == 3

    dtrain, _ = _dmatrices()
    bst = xgb.train(PARAMS, dtrain, num_boost_round=20, callbacks=[StopAt()])
    assert bst.num_boosted_rounds() == 4


def test_early_stopping():
    dtrain, dvalid = _dmatrices()
    result = {}
    bst = xgb.train(
        {**PARAMS, "eta": 0.9},
        dtrain,
        num_boost_round=200,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=3,
        evals_result=result,
        verbose_eval=False,
    )
    best = bst.best_iteration
    assert bst.num_boosted_rounds() == best + 4
    history = result["valid"]["error"]  # the last metric decides
    assert len(history) == best + 4
    assert bst.best_score == pytest.approx(min(history[: best + 1]))


def test_early_stopping_callback_save_best():
    dtrain, dvalid = _dmatrices()
    stop = xgb.callback.EarlyStopping(rounds=3, save_best=True, metric_name="logloss")
    bst = xgb.train(
        {**PARAMS, "eta": 0.9},
        dtrain,
        num_boost_round=200,
        evals=[(dvalid, "valid")],
        callbacks=[stop],
        verbose_eval=False,
    )
    assert bst.num_boosted_rounds() == bst.best_iteration + 1


def test_cv():
    dtrain, _ = _dmatrices()
    rec = Recorder()
    frame = xgb.cv(PARAMS, dtrain, num_boost_round=6, nfold=3, seed=0, callbacks=[rec])
    assert list(frame.columns) == [
        "train-logloss-mean",
        "train-logloss-std",
        "train-error-mean",
        "train-error-std",
        "test-logloss-mean",
        "test-logloss-std",
        "test-error-mean",
        "test-error-std",
    ]
    assert len(frame) == 6 and rec.after == list(range(6))
    again = xgb.cv(PARAMS, dtrain, num_boost_round=6, nfold=3, seed=0, as_pandas=False)
    assert isinstance(again, dict)
    np.testing.assert_allclose(again["test-logloss-mean"], frame["test-logloss-mean"])


def test_cv_early_stopping():
    dtrain, _ = _dmatrices()
    frame = xgb.cv(
        {**PARAMS, "eta": 0.9},
        dtrain,
        num_boost_round=200,
        nfold=3,
        seed=0,
        early_stopping_rounds=3,
    )
    assert 1 <= len(frame) < 200
    assert frame["test-error-mean"].iloc[-1] == frame["test-error-mean"].min()


def test_wrapper_fit_eval_set():
    clf = xgb.XGBClassifier(n_estimators=6, max_depth=3, eval_metric="logloss")
    clf.fit(X[:150], Y[:150], eval_set=[(X[:150], Y[:150]), (X[150:], Y[150:])], verbose=False)
    assert set(clf.evals_result_) == {"validation_0", "validation_1"}
    assert len(clf.evals_result_["validation_1"]["logloss"]) == 6
    assert clf.get_booster().num_boosted_rounds() == 6
    assert clf.predict_proba(X).shape == (200, 2)


def test_wrapper_early_stopping():
    reg = xgb.XGBRegressor(n_estimators=300, learning_rate=0.9, early_stopping_rounds=3)
    reg.fit(XR[:150], YR[:150], eval_set=[(XR[150:], YR[150:])], verbose=False)
    assert reg.get_booster().num_boosted_rounds() == reg.best_iteration + 4
    assert len(reg.evals_result_["validation_0"]["rmse"]) == reg.best_iteration + 4


def test_continued_training_booster():
    dtrain, _ = _dmatrices()
    params = {**PARAMS, "tree_method": "exact"}
    first = xgb.train(params, dtrain, num_boost_round=5)
    more = xgb.train(params, dtrain, num_boost_round=5, xgb_model=first)
    once = xgb.train(params, dtrain, num_boost_round=10)
    assert first.num_boosted_rounds() == 5  # xgb_model was copied, not changed
    assert more.num_boosted_rounds() == 10
    np.testing.assert_allclose(more.predict(dtrain), once.predict(dtrain), rtol=1e-6)


def test_continued_training_wrapper():
    first = xgb.XGBClassifier(n_estimators=4).fit(X, Y)
    more = xgb.XGBClassifier(n_estimators=4).fit(X, Y, xgb_model=first.get_booster())
    assert more.get_booster().num_boosted_rounds() == 8
    assert first.get_booster().num_boosted_rounds() == 4


@pytest.mark.parametrize("how", ["pickle", "cloudpickle", "joblib", "deepcopy"])
def test_booster_and_wrapper_round_trip(how):
    dtrain, _ = _dmatrices()
    bst = xgb.train(PARAMS, dtrain, num_boost_round=4)
    clf = xgb.XGBClassifier(n_estimators=4).fit(X, Y)

    def round_trip(obj):
        if how == "pickle":
            return pickle.loads(pickle.dumps(obj))
        if how == "cloudpickle":
            return cloudpickle.loads(cloudpickle.dumps(obj))
        if how == "joblib":
            buf = io.BytesIO()
            joblib.dump(obj, buf)
            buf.seek(0)
            return joblib.load(buf)
        return copy.deepcopy(obj)

    bst2 = round_trip(bst)
    clf2 = round_trip(clf)
    assert type(bst2) is xgb.Booster and type(clf2) is xgb.XGBClassifier
    np.testing.assert_array_equal(bst.predict(dtrain), bst2.predict(dtrain))
    np.testing.assert_array_equal(clf.predict_proba(X), clf2.predict_proba(X))
    assert round_trip(xgb.XGBClassifier).__name__ == "XGBClassifier"
    assert round_trip(xgb.train) is xgb.train or how == "deepcopy"


def test_clone_wrapper():
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, Y)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params()
    assert not hasattr(fresh, "_Booster")


def test_deprecated_positional_args_warn():
    dtrain, dvalid = _dmatrices()
    with pytest.warns(FutureWarning, match="Pass `evals` as keyword args"):
        bst = xgb.train(PARAMS, dtrain, 3, [(dvalid, "valid")])
    ref = xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")])
    np.testing.assert_array_equal(bst.predict(dvalid), ref.predict(dvalid))
    with pytest.warns(FutureWarning, match="Pass `sample_weight` as keyword args"):
        clf = xgb.XGBClassifier(n_estimators=3).fit(X, Y, np.ones(len(Y)))
    assert clf.get_booster().num_boosted_rounds() == 3


def _cancer():
    # xgboost's own tests feed these helpers the agaricus files of its source tree,
    # which are not shipped; the breast cancer data is separable enough for them too.
    x, y = load_breast_cancer(return_X_y=True)
    return xgb.DMatrix(x[:400], y[:400]), xgb.DMatrix(x[400:], y[400:])


def test_xgboost_testing_eta_decay():
    dtrain, dtest = _cancer()
    xgb_callbacks.run_eta_decay("hist", dtrain, dtest, "cpu")


@pytest.mark.parametrize("tree_method,objective", xgb_callbacks.tree_methods_objs())
def test_xgboost_testing_eta_decay_leaf_output(tree_method, objective):
    dtrain, dtest = _cancer()
    xgb_callbacks.run_eta_decay_leaf_output(tree_method, objective, dtrain, dtest, "cpu")


@pytest.mark.parametrize("tree_method", ["exact", "hist"])
def test_xgboost_testing_training_continuation(tree_method):
    xgb_continuation.run_training_continuation_model_output("cpu", tree_method)


def test_xgboost_testing_custom_objective():
    dtrain, dtest = _dmatrices()
    run_custom_objective("hist", "cpu", dtrain, dtest)
