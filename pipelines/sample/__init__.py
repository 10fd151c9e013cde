"""The synthetic shop sample behind ``crm generate-sample``: exports of an online shop with
the ground truth that produced them (the process: :mod:`pipelines.sample.generate`)."""

from pipelines.sample.generate import GenerationReport, generate_sample
from pipelines.sample.parameters import (
    CUSTOMER_COLUMNS,
    EVENT_KEYS,
    TRANSACTION_COLUMNS,
    TRUTH_CUSTOMER_COLUMNS,
    TRUTH_DUPLICATE_COLUMNS,
)

__all__ = [
    "CUSTOMER_COLUMNS",
    "EVENT_KEYS",
    "TRANSACTION_COLUMNS",
    "TRUTH_CUSTOMER_COLUMNS",
    "TRUTH_DUPLICATE_COLUMNS",
    "GenerationReport",
    "generate_sample",
]
