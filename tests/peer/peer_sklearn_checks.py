"""scikit-learn's own estimator checks (``parametrize_with_checks``) over common estimators.

Run by tests/peer/run.py with autolog off and on; not collected by the project's
default pytest run (the file name does not start with ``test_``).
"""

from __future__ import annotations

from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

ESTIMATORS = [
    LogisticRegression(),
    RandomForestClassifier(n_estimators=10, random_state=0),
    Ridge(),
    Lasso(),
    LinearRegression(),
    SVC(),
    KNeighborsClassifier(),
    DecisionTreeRegressor(random_state=0),
    GradientBoostingClassifier(n_estimators=10, random_state=0),
    StandardScaler(),
    PCA(),
    KMeans(n_clusters=3, n_init=2, random_state=0),
    Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]),
    DummyClassifier(),
    GaussianNB(),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
