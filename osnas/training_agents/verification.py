"""Pair verification accuracy with k-fold cross-validated thresholds (the LFW protocol).

A pair is called "same person" when its cosine similarity exceeds a threshold.
For each fold, the threshold that is best on the other folds is applied to it;
the result is the mean and standard deviation of the fold accuracies.
"""

from __future__ import annotations

import numpy as np

from osnas.errors import DataError


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy in [0, 1]) maximising accuracy of ``score > threshold`` on these pairs.

    Exact: every cut between two distinct sorted scores is tried (O(n log n)).
    """
    order = np.argsort(scores, kind="stable")
    s, label = scores[order], same[order].astype(bool)
    n = s.size
    # cut i: the i lowest scores are called "different", the rest "same"
    correct = np.concatenate([[0], np.cumsum(~label)]) + (label.sum() - np.concatenate([[0], np.cumsum(label)]))
    possible = np.ones(n + 1, dtype=bool)
    possible[1:n] = s[1:] > s[:-1]  # no threshold separates equal scores
    i = int(np.argmax(np.where(possible, correct, -1)))
    if i == 0:
        threshold = float(np.nextafter(s[0], -np.inf))
    elif i == n:
        threshold = float(s[-1])
    else:
        threshold = float((s[i - 1] + s[i]) / 2)
    return threshold, float(correct[i]) / n


def kfold_verification(scores: np.ndarray, same: np.ndarray, folds: int, contiguous: bool) -> dict[str, float]:
    """Mean/std accuracy (%) over ``folds`` folds and the mean chosen threshold.

    ``contiguous`` keeps the pair order (LFW's pairs.txt lists its folds one after
    the other); otherwise pairs are assigned to folds by a fixed permutation.
    """
    n = scores.size
    if n < 2:
        raise DataError(f"pair verification needs at least 2 pairs, got {n}: the split must hold at least two "
                        "images of some identity (and images of different identities) per batch")
    index = np.arange(n) if contiguous else np.random.default_rng(0).permutation(n)
    accuracies, thresholds = [], []
    for test in np.array_split(index, min(folds, n)):
        train = np.ones(n, dtype=bool)
        train[test] = False
        threshold, _ = best_threshold(scores[train], same[train])
        accuracies.append(float(np.mean((scores[test] > threshold) == same[test])))
        thresholds.append(threshold)
    return {
        "verification_accuracy": 100.0 * float(np.mean(accuracies)),
        "verification_std": 100.0 * float(np.std(accuracies)),
        "threshold": float(np.mean(thresholds)),
        "pairs": n,
    }
