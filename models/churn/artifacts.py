"""Model files: save a fitted churn model with its feature list and package versions, and
load it back only under the same scikit-learn."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.utils.validation import check_is_fitted

from models.churn.baselines import BaselineChurnModel
from models.churn.model import ChurnModel

_ARTIFACT_KIND = "crm-pipeline churn model"
_TRAINING_KIND = "crm-pipeline churn training"
_ARTIFACT_FORMAT = 1


def _versions() -> dict[str, str]:
    return {"sklearn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__}


def save_churn_model(model: ChurnModel | BaselineChurnModel, path: str | Path) -> None:
    """Write a fitted model with its feature list and package versions (no training data).

    The file is a pickle (what scikit-learn documents for persistence): load only
    files this pipeline wrote.
    """
    check_is_fitted(model)
    header = {
        "kind": _ARTIFACT_KIND,
        "format": _ARTIFACT_FORMAT,
        "model_class": type(model).__name__,
        "feature_names": list(model.feature_names_in_),
        "versions": _versions(),
    }
    with open(path, "wb") as handle:
        pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)


def load_churn_model(path: str | Path) -> ChurnModel | BaselineChurnModel:
    """Read a model written by ``save_churn_model``.

    The header is read before the model, so a file from another scikit-learn version
    is refused with a clear message instead of being unpickled (scikit-learn does not
    support loading a model across versions).
    """
    with open(path, "rb") as handle:
        header = pickle.load(handle)
        if not isinstance(header, dict) or header.get("kind") != _ARTIFACT_KIND:
            raise ValueError(f"{path} is not a churn model written by save_churn_model")
        if header.get("format") != _ARTIFACT_FORMAT:
            raise ValueError(
                f"{path} has artifact format {header.get('format')}, expected {_ARTIFACT_FORMAT}"
            )
        saved = header["versions"]["sklearn"]
        if saved != sklearn.__version__:
            raise ValueError(
                f"{path} was saved with scikit-learn {saved} but this is {sklearn.__version__}; "
                "refit the churn model with the installed version."
            )
        model = pickle.load(handle)
    model.versions_ = header["versions"]
    if list(model.feature_names_in_) != header["feature_names"]:
        raise ValueError(f"{path} is inconsistent: its header and model list different features")
    return model


def save_churn_training(path: str | Path, training: dict) -> None:
    """Write a validated churn scorer with what its validation found (``training``: model,
    metrics, importances, published, beats, message), so that a later run trained on the
    same data can publish it without fitting again. Other saved trainings in the same
    directory are removed: only the latest is ever reused."""
    path = Path(path)
    check_is_fitted(training["model"])
    header = {"kind": _TRAINING_KIND, "format": _ARTIFACT_FORMAT, "versions": _versions()}
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(training, handle, protocol=pickle.HIGHEST_PROTOCOL)
    # a run killed while writing leaves a .partial file, never a truncated training
    partial.replace(path)
    for other in path.parent.glob("churn-training-*.pkl"):
        if other != path:
            other.unlink(missing_ok=True)


def load_churn_training(path: str | Path) -> dict | None:
    """The training saved by :func:`save_churn_training` at ``path``, or None when there
    is none or it was written under other package versions (it is then trained again)."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        header = pickle.load(handle)
        if (
            not isinstance(header, dict)
            or header.get("kind") != _TRAINING_KIND
            or header.get("format") != _ARTIFACT_FORMAT
            or header.get("versions") != _versions()
        ):
            return None
        return pickle.load(handle)
