"""Seeded, stratified choices of items: subsets, 80/10/10 splits or k folds, split selection.

Every function decides from labels / group ids alone, so the loaders can pick
the files of one split (and one ``limit``) before decoding any image.
"""

from __future__ import annotations

import numpy as np

from ..errors import NeuroSQLError

SPLITS = ("train", "val", "test", "all")
SPLIT_SEED = 0  # the 80/10/10 splits never move with the training seed, so test sets stay comparable
HOLDOUT = 0.1  # fraction of split units in val and in test


def _apportion(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Integer quotas q_c with sum k closest to k·n_c/n (largest remainder, seeded ties)."""
    exact = counts * (k / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    short = k - int(quota.sum())
    # The fractional parts sum to `short` and each is < 1, so only classes with a
    # positive remainder are topped up and no quota exceeds its class size.
    order = np.lexsort((rng.random(len(counts)), -(exact - quota)))
    quota[order[:short]] += 1
    return quota


def stratified_subset(labels_or_n, k: int, seed: int) -> np.ndarray:
    """Seeded choice of k of n items, proportional per class when labels are given.

    Problem: draw S ⊂ {0..n-1}, |S| = k, uniformly within each class c, with
    |S ∩ c| = k·n_c/n rounded by largest remainder (exact when k·n_c/n is an
    integer). Without labels (an int n) S is a uniform k-subset.
    Shapes: labels (n,) any hashable-sortable values -> (min(k, n),) sorted int64.
    Complexity: O(n log n). Same (labels, k, seed) -> same subset.
    """
    labels = None if np.isscalar(labels_or_n) else np.asarray(labels_or_n)
    n = int(labels_or_n) if labels is None else len(labels)
    if k < 0:
        raise NeuroSQLError(f"subset size must be >= 0, got {k}")
    if k >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = _apportion(counts, k, rng)
    picked = [rng.choice(np.flatnonzero(inverse == c), size=q, replace=False) for c, q in enumerate(quota)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def check_folds(folds) -> tuple[int, int] | None:
    """(k, i) for k-fold cross-validation, fold i of k (0-based), or None; NeuroSQLError when invalid."""
    if folds is None:
        return None
    k, i = (int(v) for v in folds)
    if k < 3 or not 0 <= i < k:
        raise NeuroSQLError(f"--folds needs k >= 3 (a test, a val and a train fold) and --fold in 0..k-1, got {k} and {i}")
    return k, i


def seeded_split(labels_or_n, groups=None, seed: int = SPLIT_SEED, folds=None) -> np.ndarray:
    """Per-item split names from a seeded, stratified 80/10/10 split of split units, or with
    ``folds`` = (k, i) from k-fold cross-validation: the units dealt into k stratified folds,
    fold i the test split, fold i + 1 (mod k) the val split, the rest train (App. B).

    A unit is an item, or a group (subject, volume) when ``groups`` is given, so
    no group straddles two splits; a group's class is its majority label.
    max(1, round(0.1·U)) of the U units go to test and as many to val (none when
    U < 3: everything is train). Shapes: labels (n,), groups (n,) -> (n,) str.
    Complexity: O(n log n).
    """
    labels = None if np.isscalar(labels_or_n) else np.asarray(labels_or_n)
    n = int(labels_or_n) if labels is None else len(labels)
    if groups is None:
        unit_of_item, unit_labels = np.arange(n), labels
    else:
        _, unit_of_item = np.unique(np.asarray(groups), return_inverse=True)
        unit_labels = None if labels is None else _majority(unit_of_item, labels)
    units = int(unit_of_item.max()) + 1 if n else 0
    folds = check_folds(folds)
    if folds is not None:
        fold = _deal(units, unit_labels, folds[0], seed)
        unit_split = np.full(units, "train", dtype=object)
        unit_split[fold == folds[1]], unit_split[fold == (folds[1] + 1) % folds[0]] = "test", "val"
        return unit_split[unit_of_item]
    held = max(1, round(HOLDOUT * units)) if units >= 3 else 0
    test = stratified_subset(units if unit_labels is None else unit_labels, held, seed)
    rest = np.setdiff1d(np.arange(units), test)
    val = rest[stratified_subset(len(rest) if unit_labels is None else unit_labels[rest], held, seed + 1)]
    unit_split = np.full(units, "train", dtype=object)
    unit_split[test], unit_split[val] = "test", "val"
    return unit_split[unit_of_item]


def _deal(units: int, unit_labels, k: int, seed: int) -> np.ndarray:
    """Fold of each unit: each class's units in seeded random order dealt round-robin over k folds,
    continuing where the previous class stopped, so folds differ in size by at most one. (U,) -> (U,)"""
    if units < k:
        raise NeuroSQLError(f"{k} folds need at least {k} split units (images, or subjects), got {units}; lower --folds")
    rng = np.random.default_rng(seed)
    groups = [np.arange(units)] if unit_labels is None else [np.flatnonzero(unit_labels == c) for c in np.unique(unit_labels)]
    order = np.concatenate([rng.permutation(g) for g in groups])
    fold = np.empty(units, dtype=np.int64)
    fold[order] = np.arange(units) % k
    return fold


def _majority(unit_of_item: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Most frequent label per unit. (n,), (n,) -> (U,)"""
    classes, label_idx = np.unique(labels, return_inverse=True)
    counts = np.zeros((unit_of_item.max() + 1, len(classes)), dtype=np.int64)
    np.add.at(counts, (unit_of_item, label_idx), 1)
    return classes[counts.argmax(axis=1)]


class EmptySplitError(NeuroSQLError):
    """The requested split of a data set holds no item (e.g. val of a tiny folder)."""


def select(split_of_item, split: str, labels=None, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices of the items in ``split`` ("all" = every item), then a seeded stratified
    cap of ``limit`` items. (n,) str -> (m,) sorted int64. Raises if nothing is left."""
    split_of_item = np.asarray(split_of_item)
    idx = np.arange(len(split_of_item)) if split == "all" else np.flatnonzero(split_of_item == split)
    if len(idx) == 0:
        raise EmptySplitError(f"split '{split}' of this data set is empty; use split 'all' or add more data")
    if limit is not None and limit < len(idx):
        idx = idx[stratified_subset(len(idx) if labels is None else np.asarray(labels)[idx], limit, seed)]
    return idx
