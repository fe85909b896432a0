"""Per-batch statistics kept for monitoring (``track_batch_stats=True``).

The history is a tuple of per-batch records, replaced (never modified) on
each batch: the estimator's ``atomic`` methods restore a failed call from a
shallow copy of ``__dict__``, which only works if no fitted object is changed
in place.  Keeping the last ``K`` records costs ``K`` pointer copies per batch,
not a copy of ``K`` rows of statistics; the arrays are stacked only when
``batch_stats_`` is read.
"""

from typing import NamedTuple

import numpy as np


class BatchStats(NamedTuple):
    """Statistics of the last batches, oldest first.

    Attributes
    ----------
    batch : ndarray of shape (n_kept,)
        Batch number, counted from 1 since the last ``fit``
        (``n_batches_seen_`` after that batch).
    n_samples : ndarray of shape (n_kept,)
        Samples (entries along axis 0) in the batch.
    mean, var : ndarray of shape (n_kept, n_features)
        The batch's own mean and biased variance per feature.
    running_mean, running_var : ndarray of shape (n_kept, n_features)
        The running statistics after the batch was folded in.
    """

    batch: np.ndarray
    n_samples: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


def record(history, max_len, batch_number, n_samples, batch, running_mean, running_var):
    """Return ``history`` with one more record, keeping the last ``max_len``.

    Parameters
    ----------
    history : tuple of records
    max_len : int >= 1
    batch_number, n_samples : int
    batch : Moments
        The batch's moments.
    running_mean, running_var : ndarray
        Running statistics after the batch (skbn never changes them in place,
        so they are kept by reference).

    Returns
    -------
    tuple of records
    """
    entry = (
        int(batch_number),
        int(n_samples),
        batch.mean,
        batch.var,
        running_mean,
        running_var,
    )
    keep = history[len(history) - max_len + 1 :] if len(history) >= max_len else history
    return (*keep, entry)


def stack(history, n_features):
    """Stack a history into :class:`BatchStats` arrays (oldest first)."""
    k = len(history)
    columns = list(zip(*history, strict=True)) if k else [()] * 6
    ints = [np.asarray(c, dtype=np.int64).reshape(k) for c in columns[:2]]
    floats = [
        np.asarray(c, dtype=np.float64).reshape(k, n_features) for c in columns[2:]
    ]
    return BatchStats(*ints, *floats)


def unstack(stats):
    """Inverse of :func:`stack` (used when a state file is loaded)."""
    return tuple(
        (int(b), int(n), mu.copy(), v.copy(), rm.copy(), rv.copy())
        for b, n, mu, v, rm, rv in zip(*stats, strict=True)
    )
