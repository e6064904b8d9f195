"""Seeded, stratified index splits (train/val carved from the training data)."""

from __future__ import annotations

import numpy as np

from osnas.errors import DataError


def split_indices(labels: np.ndarray, fraction: float, seed: int,
                  key: str = "dataflow.val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) index arrays; ``held_out`` has ``fraction`` of the samples, stratified when possible.

    ``key`` names the option that set ``fraction``, for the error when a split would be empty.
    """
    from sklearn.model_selection import train_test_split  # imported here: it costs seconds at start-up

    labels = np.asarray(labels)
    idx = np.arange(labels.shape[0])
    counts = np.bincount(labels) if labels.size else np.array([])
    stratify = labels if counts.size and counts[counts > 0].min() >= 2 else None
    check_fraction(len(idx), int((counts > 0).sum()) if stratify is not None else 1, fraction, key)
    keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


def split_by_class(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) index arrays with whole classes held out: about ``fraction`` of the samples.

    For face recognition the held-out identities are people the supernet never saw,
    as at test time. Only classes with at least 2 samples are held out (each must
    form a same-identity pair), at least 2 of them (for different-identity pairs),
    and at least one class stays for training.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels) if labels.size else np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(counts)
    order = np.random.default_rng(seed).permutation(np.flatnonzero(counts >= 2))
    if present.size < 3 or order.size < 2:
        raise DataError(f"the search validation split holds out whole identities: the training set needs at least 3 "
                        f"identities, 2 of them with 2 or more images; it has {present.size} identities, "
                        f"{order.size} with 2 or more images")
    closest = int(np.argmin(np.abs(np.cumsum(counts[order]) - fraction * labels.size))) + 1
    held_classes = order[: max(2, min(closest, present.size - 1))]
    held = np.isin(labels, held_classes)
    return np.flatnonzero(~held), np.flatnonzero(held)


def check_fraction(samples: int, per_split: int, fraction: float, key: str) -> None:
    """Both sides of a split need ``per_split`` samples (one per class when stratified), else say what is valid."""
    held = int(np.ceil(fraction * samples))  # as scikit-learn rounds
    if held >= per_split and samples - held >= per_split:
        return
    low, high = per_split / samples, (samples - per_split) / samples
    valid = (f"a value between {low:.4g} and {high:.4g}" if low <= high
             else f"none: {samples} samples cannot fill two splits of {per_split}; lower the other fractions")
    raise DataError(f"{key}={fraction:g} splits {samples} samples into {samples - held} and {held}; each side needs "
                    f"at least {per_split} ({'one per class' if per_split > 1 else 'one sample'}); valid: {valid}")


def class_counts(labels: np.ndarray, names: list[str] | None = None) -> dict[str, int]:
    """Samples per class, keyed by class name when ``names`` is given, else by class index."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {(names[int(v)] if names else str(int(v))): int(c) for v, c in zip(values, counts)}


def check_batch_size(batch_size: int, train_samples: int) -> None:
    """A training split smaller than one batch would give no step at all with drop_last."""
    if batch_size > train_samples:
        raise DataError(
            f"dataflow.batch_size ({batch_size}) is larger than the search training split "
            f"({train_samples} samples); use at most {train_samples}"
        )
