"""The churn estimator: ``ChurnModel``, a calibrated gradient-boosted classifier (the
choices behind it are in the package docstring)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from models.churn.frames import (
    _categorical_columns,
    _check_labels,
    _check_matching_features,
    _to_pandas,
    stratified_rows,
)
from models.churn.reasons import model_contributions, reference_values

# Isotonic calibration needs about this many customers per calibration fold.
_MIN_ROWS_PER_FOLD_FOR_ISOTONIC = 1000

# Rows scored at once by predict_proba and reason_contributions (see ChurnModel._in_chunks).
PREDICT_CHUNK_ROWS = 100_000

DEFAULT_MAX_TRAIN_CUSTOMERS = 200_000
"""Training customers per fit, at most (a stratified, seeded sample above it).

Learning curve on the 1M-customer benchmark (``benchmarks/run.py --size L``): the model
trained at as_of - 2H on a sample of N labelled customers, test ROC AUC on all 1,000,078
customers at as_of - H, and the fit's CPU time:

====================  ======  ======  ======  ======  ======  ==========
N                     25k     50k     100k    200k    400k    all (1.0M)
ROC AUC               0.917   0.919   0.920   0.921   0.922   0.922
fit, CPU s            0.9     1.5     3.3     6.4     12.5    31.8
====================  ======  ======  ======  ======  ======  ==========

(exactly: 0.9170, 0.9187, 0.9203, 0.9212, 0.9217, 0.9224; PR AUC 0.976 to 0.980.) Past
200k customers the fit time keeps doubling while the AUC gains under 0.001 per doubling,
so the refit on a larger shop is capped here; smaller shops use every labelled customer.
"""


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Calibrated gradient-boosted churn classifier.

    Class 1 = churned (no completed order within the horizon after the cutoff).

    Parameters
    ----------
    learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to ``HistGradientBoostingClassifier``.
    class_weight : {"auto", "balanced"} or None
        Weights for the boosting step only; calibration is always fit unweighted.
        "auto" = "balanced" when the rarer class is under ``imbalance_threshold`` of
        the training customers, else no weights.
    imbalance_threshold : float
        Share of the rarer class below which "auto" weights the classes.
    calibration : {"auto", "sigmoid", "isotonic"}
        "auto" = isotonic when every calibration fold has at least 1000 customers,
        else sigmoid.
    calibration_folds : int
        Folds of CalibratedClassifierCV on training sets smaller than
        ``holdout_min_customers`` (fewer when the rarer class is smaller).
    holdout_min_customers : int
        From this many training customers on, the booster is fitted once on
        ``1 - calibration_share`` of them and calibrated on the rest (a stratified, seeded
        split) instead of ``calibration_folds + 1`` fits.
    calibration_share : float
        Share of the customers held out for calibration on large training sets.
    max_train_customers : int or None
        Fit on a seeded sample of at most this many customers, stratified by the label
        (None = all); see ``DEFAULT_MAX_TRAIN_CUSTOMERS``.
    early_stopping : "auto" or bool
        Passed to ``HistGradientBoostingClassifier``: stop adding trees when the log loss
        on 10 % of the boosting rows (a seeded, stratified split) has not improved for 10
        iterations, ``max_iter`` being the cap; "auto" = from 10,000 rows on.
    max_categories : int
        Largest number of categories kept per categorical column (rarer ones are
        grouped); keeps the boosting step within its 255 bins.
    n_threads : int or None
        OpenMP threads for boosting; None = all cores. Default 1: OpenMP threads
        busy-wait, and on a shared machine (CI, other jobs running) two threads were
        about six times slower than one at these data sizes.
    random_state : int
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        max_iter: int = 100,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        class_weight: str | None = "auto",
        imbalance_threshold: float = 0.2,
        calibration: str = "auto",
        calibration_folds: int = 5,
        holdout_min_customers: int = 20_000,
        calibration_share: float = 0.2,
        max_train_customers: int | None = DEFAULT_MAX_TRAIN_CUSTOMERS,
        early_stopping: bool | str = "auto",
        max_categories: int = 32,
        n_threads: int | None = 1,
        random_state: int = 0,
    ):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.imbalance_threshold = imbalance_threshold
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.holdout_min_customers = holdout_min_customers
        self.calibration_share = calibration_share
        self.max_train_customers = max_train_customers
        self.early_stopping = early_stopping
        self.max_categories = max_categories
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X: pl.DataFrame | pd.DataFrame, y) -> ChurnModel:
        """Fit on one row per customer.

        Parameters
        ----------
        X : polars or pandas DataFrame
            Feature columns only (see ``select_feature_columns``); text columns are
            treated as categorical, everything else as numbers, missing values allowed.
        y : array-like of bool or 0/1
            ``is_churned`` from the dated label table, aligned with ``X``.
        """
        labels = self._check_fit_input(X, y)
        X, labels = self._sample(X, labels)
        counts = np.bincount(labels, minlength=2)
        categorical = _categorical_columns(X)
        frame = _to_pandas(X, categorical)
        # A feature known for fewer customers than a leaf needs can never be split on
        # (and an all-missing column breaks the boosting's binning): set it aside. This
        # is the usual case for profile and event features when a source is absent.
        unused = [
            name for name in frame.columns if frame[name].notna().sum() < self.min_samples_leaf
        ]
        categorical_used = [name for name in categorical if name not in unused]
        holdout = len(labels) >= self.holdout_min_customers
        n_folds = int(min(self.calibration_folds, counts.min()))
        method = self._calibration_method(len(labels), holdout, n_folds)
        class_weight = self._boosting_class_weight(counts)

        booster = self._booster(categorical_used, class_weight)
        encoder = self._encoder(categorical_used, unused)
        pipeline = self._calibrate(encoder, booster, frame, labels, method, holdout, n_folds)

        self.pipeline_ = pipeline
        # the reference customer of the churn reasons (models/churn/reasons.py)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            encoded = pipeline.named_steps["encode"].transform(frame)
        self.reason_reference_ = reference_values(encoded, labels, categorical_used)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(frame.columns)
        self.categorical_features_ = list(categorical)
        self.unused_features_ = unused
        self.calibration_method_ = method
        self.class_weight_ = class_weight
        self.calibration_cv_ = "holdout" if holdout else f"{n_folds}-fold"
        self.n_train_customers_ = len(labels)
        self.classes_ = np.array([0, 1])
        return self

    def _check_fit_input(self, X: pl.DataFrame | pd.DataFrame, y) -> np.ndarray:
        """Refuse unknown parameter values and labels ``fit`` cannot use.

        Returns
        -------
        numpy.ndarray
            The labels as 0/1 integers, one per row of ``X``, with at least 2 of each class.
        """
        if self.calibration not in ("auto", "sigmoid", "isotonic"):
            raise ValueError(
                f"calibration must be 'auto', 'sigmoid' or 'isotonic', got {self.calibration!r}"
            )
        if self.class_weight not in ("auto", "balanced", None):
            raise ValueError(
                f"class_weight must be 'auto', 'balanced' or None, got {self.class_weight!r}"
            )
        labels = _check_labels(y)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        counts = np.bincount(labels, minlength=2)
        if counts.min() < 2:
            raise ValueError(
                f"need at least 2 churned and 2 retained customers to fit, got {counts[1]} and {counts[0]}"
            )
        return labels

    def _sample(
        self, X: pl.DataFrame | pd.DataFrame, labels: np.ndarray
    ) -> tuple[pl.DataFrame | pd.DataFrame, np.ndarray]:
        """The training customers: all of them, or a seeded sample of
        ``max_train_customers`` stratified by the label when there are more.

        Returns
        -------
        (X, labels), the sampled rows in the frame's own order.
        """
        keep = self.sample_rows(labels)
        if keep is not None:
            X = X[keep] if isinstance(X, pl.DataFrame) else X.iloc[keep]
            labels = labels[keep]
        return X, labels

    def sample_rows(self, labels) -> np.ndarray | None:
        """The rows ``fit`` trains on for these labels: sorted positions of the seeded
        sample of ``max_train_customers`` stratified by the label, or None for all of them.
        Fitting on just those rows (with their labels) gives the same model as fitting on
        the whole frame."""
        return stratified_rows(labels, self.max_train_customers, self.random_state)

    def _calibration_method(self, n_customers: int, holdout: bool, n_folds: int) -> str:
        """``calibration``, with "auto" resolved: isotonic when the calibration set (or
        each fold) holds at least ``_MIN_ROWS_PER_FOLD_FOR_ISOTONIC`` customers, else sigmoid."""
        method = self.calibration
        if method == "auto":
            rows_per_fold = (
                n_customers * self.calibration_share if holdout else n_customers / n_folds
            )
            method = "isotonic" if rows_per_fold >= _MIN_ROWS_PER_FOLD_FOR_ISOTONIC else "sigmoid"
        return method

    def _boosting_class_weight(self, counts: np.ndarray) -> str | None:
        """``class_weight``, with "auto" resolved from the class counts: "balanced" when
        the rarer class is under ``imbalance_threshold`` of the customers, else None."""
        class_weight = self.class_weight
        if class_weight == "auto":
            minority_share = counts.min() / counts.sum()
            class_weight = "balanced" if minority_share < self.imbalance_threshold else None
        return class_weight

    def _booster(
        self, categorical_used: list[str], class_weight: str | None
    ) -> HistGradientBoostingClassifier:
        """The unfitted booster, on the encoded columns (categorical ones first)."""
        return HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            categorical_features=categorical_used or None,
            class_weight=class_weight,
            early_stopping=self.early_stopping,
            random_state=self.random_state,
        )

    def _encoder(self, categorical_used: list[str], unused: list[str]) -> ColumnTransformer:
        """The unfitted encoder: ordinal codes for the categorical columns (at most
        ``max_categories`` each, unknown and missing values as NaN), the unused
        columns dropped, the rest passed through; its output is a pandas frame."""
        steps = []
        if categorical_used:
            ordinal = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=self.max_categories,
            )
            steps.append(("categorical", ordinal, categorical_used))
        if unused:
            steps.append(("unused", "drop", unused))
        return ColumnTransformer(
            steps,
            remainder="passthrough",
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")

    def _calibrate(
        self,
        encoder: ColumnTransformer,
        booster: HistGradientBoostingClassifier,
        frame: pd.DataFrame,
        labels: np.ndarray,
        method: str,
        holdout: bool,
        n_folds: int,
    ) -> Pipeline:
        """Fit encoder, booster and calibration, within ``n_threads`` OpenMP threads.

        With ``holdout``, the booster is fitted on ``1 - calibration_share`` of the rows
        and calibrated on the rest (a stratified, seeded split); otherwise it is refitted
        on all rows and calibrated on the out-of-fold predictions of ``n_folds``
        stratified, seeded folds.

        Returns
        -------
        sklearn.pipeline.Pipeline
            Steps "encode" (the fitted encoder) and "classify" (the calibrated booster).
        """
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            if holdout:
                # Large sets: one booster on most customers, calibrated on the held-out
                # rest, which it never saw (Platt 1999; Niculescu-Mizil & Caruana 2005).
                encoded = encoder.fit_transform(frame)
                fit_rows, calibration_rows = train_test_split(
                    np.arange(len(labels)),
                    test_size=self.calibration_share,
                    stratify=labels,
                    random_state=self.random_state,
                )
                fit_rows, calibration_rows = np.sort(fit_rows), np.sort(calibration_rows)
                booster.fit(encoded.iloc[fit_rows], labels[fit_rows])
                calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method=method).fit(
                    encoded.iloc[calibration_rows], labels[calibration_rows]
                )
                pipeline = Pipeline([("encode", encoder), ("classify", calibrated)])
            else:
                # ensemble=False: one booster refit on all rows, calibrated on the
                # out-of-fold predictions of the fold models; scoring (and the permutation
                # importances) then runs one booster instead of one per fold.
                calibrated = CalibratedClassifierCV(
                    booster,
                    method=method,
                    cv=StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state),
                    ensemble=False,
                )
                pipeline = Pipeline([("encode", encoder), ("classify", calibrated)])
                pipeline.fit(frame, labels)
        return pipeline

    def _prepare(self, X: pl.DataFrame | pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        _check_matching_features(list(self.feature_names_in_), X)
        frame = _to_pandas(X, self.categorical_features_)
        return frame[list(self.feature_names_in_)]

    def _in_chunks(self, X: pl.DataFrame | pd.DataFrame, score) -> list:
        """``score(pandas frame)`` of ``X`` in chunks of ``PREDICT_CHUNK_ROWS`` rows, in
        order: every step scores each row on its own, so the results are those of one
        call, while the pandas copies and the encoder's output exist for one chunk at a
        time (a million customers at once took ~1 GB more)."""
        rows = X.__getitem__ if isinstance(X, pl.DataFrame) else X.iloc.__getitem__
        starts = range(0, len(X), PREDICT_CHUNK_ROWS) if len(X) else [0]
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return [
                score(self._prepare(rows(slice(start, start + PREDICT_CHUNK_ROWS))))
                for start in starts
            ]

    def predict_proba(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """Probabilities, shape (n, 2); column 1 is the churn probability."""
        return np.concatenate(self._in_chunks(X, lambda frame: self.pipeline_.predict_proba(frame)))

    def fitted_booster(self) -> HistGradientBoostingClassifier:
        """The fitted, uncalibrated booster inside the calibration step."""
        check_is_fitted(self)
        calibrated = self.pipeline_.named_steps["classify"].calibrated_classifiers_[0].estimator
        return calibrated.estimator if isinstance(calibrated, FrozenEstimator) else calibrated

    def reason_contributions(self, X: pl.DataFrame | pd.DataFrame) -> dict[str, np.ndarray]:
        """Per reason group, what each customer's own values add to the booster's log-odds
        of churn over the reference customer's (see ``models.churn.reasons``).

        Returns
        -------
        dict group -> numpy.ndarray, one log-odds difference per row of ``X``.
        """
        booster, encoder = self.fitted_booster(), self.pipeline_.named_steps["encode"]
        parts = self._in_chunks(
            X,
            lambda frame: model_contributions(
                booster, encoder.transform(frame), self.reason_reference_
            ),
        )
        return {group: np.concatenate([part[group] for part in parts]) for group in parts[0]}

    def predict(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least one half."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
