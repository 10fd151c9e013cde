"""The Gamma-Gamma model of the mean repeat order value (Hardie note 025): :class:`GammaGammaModel`.

A scikit-learn style estimator around :class:`models.clv.likelihood.GammaGammaFitter`: the fit
on repeat buyers with the penalizer ladder, and the expected value of a future order.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from models.clv.fitting import (
    DEFAULT_MAX_PARAMETER,
    DEFAULT_PENALIZERS,
    ModelFitError,
    fit_ladder,
    standard_errors,
    tidy_metrics,
    tidy_parameters,
)
from models.clv.likelihood import GammaGammaFitter
from models.clv.summary import compress_summary, validate_summary


class GammaGammaModel(BaseEstimator):
    """Gamma-Gamma model of the mean repeat order value (Fader, Hardie & Lee 2005; Hardie note 025).

    Fitted on repeat buyers (frequency > 0) with a positive monetary_value, which is the mean of
    their repeat purchases. The model assumes spend is independent of frequency; the Pearson
    correlation between the two over the fitted customers is kept as a metric.

    Parameters
    ----------
    penalizers, max_parameter, compress, tol
        As in :class:`BetaGeoModel`; ``compress`` groups identical (frequency, monetary_value)
        pairs, which lifetimes' GammaGammaFitter accepts as weights.

    Attributes
    ----------
    params_ : dict  p, q, gamma (lifetimes calls gamma ``v``)
    std_errors_, penalizer_, fit_attempts_
    n_customers_ : int  repeat buyers used
    frequency_monetary_correlation_ : float or None  Pearson r(frequency, monetary_value)
    fitter_ : models.clv.likelihood.GammaGammaFitter  a lifetimes.GammaGammaFitter
    """

    def __init__(
        self,
        *,
        penalizers: tuple[float, ...] = DEFAULT_PENALIZERS,
        max_parameter: float = DEFAULT_MAX_PARAMETER,
        compress: bool = True,
        tol: float = 1e-7,
    ):
        self.penalizers = penalizers
        self.max_parameter = max_parameter
        self.compress = compress
        self.tol = tol

    def fit(self, summary: pl.DataFrame) -> GammaGammaModel:
        """Fit on ``models.clv_summary`` rows (one resolution): frequency, monetary_value.

        Raises ModelFitError when there are fewer than 2 repeat buyers or every penalizer fails.
        """
        validate_summary(summary, ("frequency", "monetary_value"), "Gamma-Gamma")
        buyers = summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
        if buyers.height < 2:
            raise ModelFitError(
                f"The Gamma-Gamma model could not be fitted: only {buyers.height} repeat buyers."
            )
        columns = ("frequency", "monetary_value")
        data = (
            compress_summary(buyers, columns)
            if self.compress
            else buyers.with_columns(weights=pl.lit(1))
        )
        frequency = data.get_column("frequency").to_numpy().astype(float)
        monetary = data.get_column("monetary_value").to_numpy().astype(float)
        weights = data.get_column("weights").to_numpy().astype(float)

        def fit(fitter):
            fitter.fit(frequency, monetary, weights=weights, tol=self.tol)

        def population_mean_exists(params):
            # E[spend] = p * gamma / (q - 1) is infinite or negative for q <= 1
            return (
                None if params["q"] > 1 else f"gave q={params['q']:.3g} <= 1 (no finite mean spend)"
            )

        fitter, penalizer, attempts = fit_ladder(
            "Gamma-Gamma",
            lambda p: GammaGammaFitter(penalizer_coef=p),
            fit,
            self.penalizers,
            self.max_parameter,
            population_mean_exists,
        )
        names = {"p": "p", "q": "q", "v": "gamma"}
        self.fitter_ = fitter
        self.params_ = {names[name]: float(value) for name, value in fitter.params_.items()}
        errors = standard_errors(fitter, list(names))
        self.std_errors_ = {names[name]: value for name, value in errors.items()}
        self.penalizer_ = penalizer
        self.fit_attempts_ = attempts
        self.n_customers_ = buyers.height
        x = buyers.get_column("frequency").to_numpy().astype(float)
        m = buyers.get_column("monetary_value").to_numpy().astype(float)
        with np.errstate(all="ignore"):
            correlation = (
                float(np.corrcoef(x, m)[0, 1]) if np.std(x) > 0 and np.std(m) > 0 else float("nan")
            )
        self.frequency_monetary_correlation_ = correlation if math.isfinite(correlation) else None
        return self

    def check_fitted(self) -> None:
        """Raise scikit-learn's NotFittedError unless :meth:`fit` has been called."""
        if not hasattr(self, "params_"):
            raise NotFittedError("This GammaGammaModel is not fitted yet; call fit first.")

    def predict(self, summary: pl.DataFrame) -> np.ndarray:
        """Expected value of a future order, one value per summary row (Hardie note 025 eq. 5).

        A weighted mean of the customer's own repeat order value and the population mean
        p * gamma / (q - 1); customers without a repeat purchase get the population mean.
        """
        self.check_fitted()
        validate_summary(summary, ("frequency", "monetary_value"), "Gamma-Gamma")
        frequency = summary.get_column("frequency").to_numpy().astype(float)
        monetary = summary.get_column("monetary_value").to_numpy().astype(float)
        p, q, gamma = self.params_["p"], self.params_["q"], self.params_["gamma"]
        individual_weight = p * frequency / (p * frequency + q - 1)
        population_mean = gamma * p / (q - 1)
        return (1 - individual_weight) * population_mean + individual_weight * monetary

    def parameters_frame(self) -> pl.DataFrame:
        """Tidy parameters: model='gamma_gamma', parameter (p, q, gamma, penalizer), value, std_error."""
        self.check_fitted()
        return tidy_parameters("gamma_gamma", self.params_, self.std_errors_, self.penalizer_)

    def metrics_frame(self) -> pl.DataFrame:
        """Tidy fit metrics: model, metric, value, baseline (null).

        ``frequency_monetary_correlation`` near 0 supports the model's independence assumption.
        """
        self.check_fitted()
        rows = [
            ("repeat_buyers", float(self.n_customers_), None),
            ("frequency_monetary_correlation", self.frequency_monetary_correlation_, None),
            ("fit_attempts", float(len(self.fit_attempts_)), None),
        ]
        return tidy_metrics("gamma_gamma", rows)
