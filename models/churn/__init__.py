"""Churn-risk model: probability that a customer places no completed order in the horizon.

Frames in, frames out: no file paths (except in ``save_churn_model`` /
``load_churn_model``, which take the path from the caller) and no database. Features
come from ``sql/models/churn_features.sql`` and labels (``is_churned``) from the
separate, dated ``sql/models/churn_labels.sql``; this package never builds a label.

Choices:

- HistGradientBoostingClassifier: non-linear, handles missing values (no events, no
  profile, a single order without a gap) and categorical columns natively, fast on
  tens of thousands of rows, no scaling needed.
- Imbalance: churn within a 90-day horizon is rarely rare (30-70 % of buyers in
  non-contractual retail), and at such rates class weights did not change the test
  ROC AUC while making every fit 2.5-4x slower (weighted binning in scikit-learn 1.9). So
  ``class_weight="auto"`` weights the classes ("balanced") only when the rarer class is
  under 20 % of the training customers, where the trees would otherwise barely split
  on it. Calibration is fit on held-out folds *without* weights, so the published
  probabilities return to the true base rate either way.
- Calibration: on fewer than 20,000 training customers, CalibratedClassifierCV over 5
  folds (one booster per fold, then one on all rows); from 20,000 on, one booster fit on
  80 % of them and calibrated on the other 20 % (a stratified, seeded split), which is
  six times cheaper and leaves thousands of customers to calibrate on. ``method="auto"``
  = isotonic when the calibration set (or each fold) holds at least 1000 customers
  (isotonic regression overfits below that, see the scikit-learn user guide on
  probability calibration), else sigmoid (Platt 1999, two parameters, safe on small data).
- Size: from 10,000 rows the booster stops adding trees once the log loss on a 10 %
  validation split stops improving (scikit-learn's ``early_stopping="auto"``), and a fit
  uses at most ``DEFAULT_MAX_TRAIN_CUSTOMERS`` = 200,000 customers (a stratified, seeded
  sample; the learning curve behind that number is in its docstring). Permutation
  importances use at most 20,000 test customers and 3 repeats
  (``DEFAULT_MAX_IMPORTANCE_CUSTOMERS``).
- Baselines are the scores users reach for without a model: recency (days since the
  last order) and the customer-base model's P(no purchase in the horizon),
  ``p_no_purchase``. Ranking metrics use their raw scores; probability metrics use the
  same score Platt-scaled on the training cutoff, so Brier score and log loss compare like
  with like. The model is published only where the 95% DeLong interval of its ROC AUC
  minus the best baseline's lies above 0.

Modules: ``model`` (``ChurnModel``), ``baselines`` (the baseline models and the fallback
score), ``evaluation`` (metrics, the published scorer, permutation importances),
``scores`` (bands and the scores frame), ``reasons`` (``churn_reasons``: the top three
drivers of each customer's score as phrases), ``artifacts`` (model files) and ``frames`` (the
id and label columns, and the conversions and checks shared by the others). Import from
``models.churn``: this face re-exports the public names.
"""

from models.churn.artifacts import (
    load_churn_model,
    load_churn_training,
    save_churn_model,
    save_churn_training,
)
from models.churn.baselines import BASELINE_SCORES, BaselineChurnModel, score_without_labels
from models.churn.evaluation import (
    DEFAULT_MAX_IMPORTANCE_CUSTOMERS,
    IMPORTANCES_SCHEMA,
    METRICS_SCHEMA,
    MODEL_NAME,
    VERDICT_MODEL,
    choose_published_scorer,
    churn_verdict,
    compute_churn_metrics,
    compute_permutation_importances,
    delong_auc_difference,
    verdict_metrics,
)
from models.churn.frames import ID_COLUMNS, LABEL_COLUMN, select_feature_columns, stratified_rows
from models.churn.model import DEFAULT_MAX_TRAIN_CUSTOMERS, ChurnModel
from models.churn.scores import SCORES_SCHEMA, assign_churn_bands, build_churn_scores

__all__ = [
    "load_churn_training",
    "save_churn_training",
    "BASELINE_SCORES",
    "DEFAULT_MAX_IMPORTANCE_CUSTOMERS",
    "DEFAULT_MAX_TRAIN_CUSTOMERS",
    "ID_COLUMNS",
    "IMPORTANCES_SCHEMA",
    "LABEL_COLUMN",
    "METRICS_SCHEMA",
    "MODEL_NAME",
    "SCORES_SCHEMA",
    "VERDICT_MODEL",
    "BaselineChurnModel",
    "ChurnModel",
    "assign_churn_bands",
    "build_churn_scores",
    "choose_published_scorer",
    "churn_verdict",
    "compute_churn_metrics",
    "compute_permutation_importances",
    "delong_auc_difference",
    "load_churn_model",
    "save_churn_model",
    "score_without_labels",
    "select_feature_columns",
    "stratified_rows",
    "verdict_metrics",
]
