"""Small classification data sets that ship with scikit-learn, split and standardized.

Every data set here is bundled with scikit-learn, so the lab runs offline. :func:`load_split`
shuffles with a seed, splits stratified into train / validation / test (60 / 20 / 20 by
default) and standardizes every feature with the *training* mean and standard deviation, so
nothing about the validation or test samples leaks into training.

    >>> split = load_split("digits", seed=0)
    >>> split.X_train.shape, split.X_val.shape, split.X_test.shape, split.classes
    (torch.Size([1077, 64]), torch.Size([360, 64]), torch.Size([360, 64]), 10)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DATASETS", "DataSet", "Split", "load_split"]


@dataclass(frozen=True)
class DataSet:
    """A bundled classification data set and the accuracy the lab calls "reached"."""

    name: str
    title: str
    loader: str  # the sklearn.datasets function, imported only when the data is needed
    target_accuracy: float
    about: str

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        load: Callable = getattr(sklearn.datasets, self.loader)
        X, y = load(return_X_y=True)
        return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


#: Every data set the lab can load, by name.
DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in (
        DataSet(
            "digits",
            "Handwritten digits",
            "load_digits",
            0.95,
            "1797 images of 8x8 pixels, 10 classes",
        ),
        DataSet(
            "breast_cancer",
            "Breast cancer",
            "load_breast_cancer",
            0.95,
            "569 tumours, 30 measurements, benign or malignant",
        ),
        DataSet("iris", "Iris", "load_iris", 0.9, "150 flowers, 4 measurements, 3 species"),
        DataSet("wine", "Wine", "load_wine", 0.95, "178 wines, 13 measurements, 3 cultivars"),
    )
}


@dataclass(frozen=True)
class Split:
    """Standardized train / validation / test tensors of one data set."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return self.X_train.shape[1]


def get_dataset(name: str) -> DataSet:
    """The data set called ``name``; the error lists the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(DATASETS)
        raise KeyError(f"unknown data set {name!r}; valid names: {valid}") from None


@functools.lru_cache(maxsize=8)
def load_split(name: str, seed: int = 0, validation: float = 0.2, test: float = 0.2) -> Split:
    """Load ``name``, split it stratified with ``seed``, standardize with training statistics."""
    from sklearn.model_selection import train_test_split

    X, y = get_dataset(name).arrays()
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test, random_state=seed, stratify=y
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=validation / (1 - test), random_state=seed, stratify=y_rest
    )
    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0  # features constant over the training set (blank pixels of digits)

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.int64)

    return Split(
        name,
        features(X_train),
        labels(y_train),
        features(X_val),
        labels(y_val),
        features(X_test),
        labels(y_test),
        int(y.max()) + 1,
    )
