"""Customer lifetime value: BG/NBD purchase counts and Gamma-Gamma spend.

Frames in, frames out: every function takes the per-customer summary that
``sql/models/clv_summary.sql`` builds (``models.clv_summary``, one resolution) as a Polars
frame and returns Polars frames or NumPy arrays. No file paths, no database.

``lifetimes`` is used for the likelihoods, the optimiser and the conditional expectations
(imported only in :mod:`models.clv.likelihood`). The discounting, the next-order date and the
holdout check are computed in this package.

This package's face: it re-exports the public names; each job has its own module.

- :mod:`~models.clv.summary`: resolution choice, enough-data check, validation and compression
  of the summary;
- :mod:`~models.clv.likelihood`: closed-form likelihoods, the optimiser and Newton polish, the
  lifetimes fitter subclasses;
- :mod:`~models.clv.fitting`: ModelFitError, the penalizer ladder, tidy parameter and metric
  frames;
- :mod:`~models.clv.beta_geo`: BetaGeoModel; :mod:`~models.clv.gamma_gamma`: GammaGammaModel;
- :mod:`~models.clv.candidates`: ModifiedBetaGeoModel, ParetoNBDModel, choose_model (the
  published customer-base model per run: lowest holdout MAE, a tie to the simplest);
- :mod:`~models.clv.predict`: predict_customer_value, discounting, naive next-order dates;
- :mod:`~models.clv.holdout`: evaluate_holdout, score_next_order_dates;
- :mod:`~models.clv.next_order`: P(order within h days), the next order date, their naive
  rules, Harrell's C and the next-order verdict.

Models
    BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to
    the Pareto/NBD Model", Marketing Science 24(2). Gamma-Gamma: Fader, Hardie & Lee (2005),
    "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", JMR 42(4), and Hardie's
    note 025 "The Gamma-Gamma Model of Monetary Value".

Typical use (the orchestrator reads settings and passes them in)::

    resolution = choose_resolution(detect_time_of_day(order_at), requested="auto")
    summary = clv_summary.filter(pl.col("resolution") == resolution)
    reason = check_enough_data(summary, unit_days=7)
    if reason is None:
        bgnbd = BetaGeoModel(unit_days=7).fit(summary)          # may raise ModelFitError
        gamma_gamma = GammaGammaModel().fit(summary)            # may raise ModelFitError
        values = predict_customer_value(summary, bgnbd=bgnbd, gamma_gamma=gamma_gamma, as_of=as_of)
"""

from models.clv.beta_geo import BetaGeoModel
from models.clv.candidates import (
    CANDIDATE_BY_NAME,
    CANDIDATES,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    choose_model,
)
from models.clv.fitting import DEFAULT_PENALIZERS, ModelFitError
from models.clv.gamma_gamma import GammaGammaModel
from models.clv.holdout import (
    CLV_VERDICT_MODEL,
    evaluate_holdout,
    holdout_verdict,
    score_next_order_dates,
)
from models.clv.next_order import (
    DATE_QUANTITY,
    NAIVE_RULES,
    describe_next_order_verdict,
    harrell_c,
    naive_order_probabilities,
    order_probability_column,
    predict_next_order_offsets,
    predict_order_probabilities,
    published_sources,
    score_next_order,
)
from models.clv.predict import (
    discounted_expected_purchases,
    predict_customer_value,
    predict_naive_next_order_dates,
)
from models.clv.summary import (
    check_enough_data,
    choose_resolution,
    compress_summary,
    detect_time_of_day,
)

__all__ = [
    "DATE_QUANTITY",
    "NAIVE_RULES",
    "CANDIDATES",
    "CANDIDATE_BY_NAME",
    "CLV_VERDICT_MODEL",
    "ModifiedBetaGeoModel",
    "ParetoNBDModel",
    "choose_model",
    "holdout_verdict",
    "DEFAULT_PENALIZERS",
    "BetaGeoModel",
    "GammaGammaModel",
    "ModelFitError",
    "check_enough_data",
    "choose_resolution",
    "compress_summary",
    "detect_time_of_day",
    "discounted_expected_purchases",
    "describe_next_order_verdict",
    "evaluate_holdout",
    "harrell_c",
    "naive_order_probabilities",
    "order_probability_column",
    "predict_customer_value",
    "predict_naive_next_order_dates",
    "predict_next_order_offsets",
    "predict_order_probabilities",
    "published_sources",
    "score_next_order",
    "score_next_order_dates",
]
