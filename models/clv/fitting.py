"""What both CLV models share around a fit: the failure, the penalizer ladder, tidy frames.

:class:`ModelFitError` (the one-sentence reason a model could not be fitted), the penalizer
ladder that retries a failed or absurd fit with the next penalizer (:func:`fit_ladder`), the
standard errors of a lifetimes fitter (:func:`standard_errors`), and the tidy parameter and metric
frames written to ``models.model_parameters`` / ``models.model_metrics``
(:func:`tidy_parameters`, :func:`tidy_metrics`).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from models.clv.likelihood import ConvergenceError

#: Penalizers tried in order until a fit is acceptable. The first is 0: lifetimes averages the
#: log-likelihood over customers before adding ``penalizer * sum(params**2)``, so even the
#: customary 0.001 is strong (it shrank a by 29% and b by 46% on generated data).
DEFAULT_PENALIZERS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2)

#: A fitted parameter above this is treated as a blow-up (e.g. r, alpha, b run off to ~1e8 when
#: nobody ever drops out).
DEFAULT_MAX_PARAMETER = 1e6

_PARAMETER_SCHEMA = {
    "model": pl.String,
    "parameter": pl.String,
    "value": pl.Float64,
    "std_error": pl.Float64,
}
_METRIC_SCHEMA = {
    "model": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "baseline": pl.Float64,
}


class ModelFitError(RuntimeError):
    """A model could not be fitted; ``str(error)`` is a one-sentence reason for users.

    The orchestrator catches it and continues the run without CLV.
    """


@contextlib.contextmanager
def _quiet_fit():
    """Keep lifetimes' optimiser noise away from users and from warnings-as-errors tests.

    lifetimes prints the scipy result before raising ConvergenceError, installs a global
    FutureWarning filter on every likelihood evaluation, and the optimiser overflows
    harmlessly while exploring; the outcome is judged by the checks in ``fit_ladder``.
    """
    with (
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def fit_ladder(
    model_name: str,
    make_fitter: Callable[[float], object],
    fit: Callable[[object], object],
    penalizers: Sequence[float],
    max_parameter: float,
    extra_check: Callable[[dict[str, float]], str | None] | None = None,
):
    """Fit with each penalizer in turn until the parameters are acceptable.

    A rung fails on ConvergenceError (or another numerical error of the optimiser or of the
    Hessian inversion), on non-finite parameters, on a parameter <= 0 or > ``max_parameter``,
    or on ``extra_check``. Returns (fitter, penalizer, attempts), attempts being
    ((penalizer, reason or None), ...).
    """
    if len(penalizers) == 0:
        raise ValueError(f"{model_name}: penalizers must not be empty")
    attempts: list[tuple[float, str | None]] = []
    for penalizer in penalizers:
        fitter = make_fitter(float(penalizer))
        try:
            with _quiet_fit():
                fit(fitter)
        except (ConvergenceError, ArithmeticError, np.linalg.LinAlgError, ValueError) as error:
            detail = " ".join(str(error).split()) or type(error).__name__
            reason = (
                "did not converge" if isinstance(error, ConvergenceError) else f"failed ({detail})"
            )
            attempts.append((float(penalizer), reason))
            continue
        params = {name: float(value) for name, value in fitter.params_.items()}
        reason = None
        bad = [name for name, value in params.items() if not math.isfinite(value)]
        if bad:
            reason = f"gave non-finite {', '.join(bad)}"
        else:
            bad = [name for name, value in params.items() if value <= 0 or value > max_parameter]
            if bad:
                reason = "gave absurd " + ", ".join(f"{name}={params[name]:.3g}" for name in bad)
            elif extra_check is not None:
                reason = extra_check(params)
        attempts.append((float(penalizer), reason))
        if reason is None:
            return fitter, float(penalizer), tuple(attempts)
    tried = ", ".join(f"{p:g}" for p in penalizers)
    raise ModelFitError(
        f"The {model_name} model could not be fitted with any penalizer ({tried}): "
        f"with {attempts[-1][0]:g} it {attempts[-1][1]}."
    )


def standard_errors(fitter, names: Sequence[str]) -> dict[str, float]:
    """The standard errors of a fitted lifetimes fitter's parameters ``names``, as floats."""
    # lifetimes: diag(params^2 * inverse Hessian of the mean log-likelihood in log-parameters / n),
    # the delta method; NaN where the Hessian is not positive definite at the optimum.
    with np.errstate(invalid="ignore"):
        errors = fitter.standard_errors_
    return {name: float(errors[name]) for name in names}


def tidy_parameters(
    model: str, params: dict[str, float], std_errors: dict[str, float], penalizer: float
) -> pl.DataFrame:
    """One row per parameter and one for the penalizer: model, parameter, value, std_error
    (null where there is none or it is NaN)."""
    rows = [(model, name, value, std_errors.get(name)) for name, value in params.items()]
    rows.append((model, "penalizer", penalizer, None))
    frame = pl.DataFrame(rows, schema=_PARAMETER_SCHEMA, orient="row")
    return frame.with_columns(pl.col("std_error").fill_nan(None))


def tidy_metrics(model: str, rows) -> pl.DataFrame:
    """One row per ``(metric, value, baseline)`` of ``rows``: model, metric, value, baseline
    (NaN becomes null)."""
    frame = pl.DataFrame([(model, *row) for row in rows], schema=_METRIC_SCHEMA, orient="row")
    return frame.with_columns(pl.col("value").fill_nan(None), pl.col("baseline").fill_nan(None))
