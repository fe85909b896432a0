"""The per-sample norms' math: statistics per (sample, group) of the view
``(N, S1, G, Cg, S2)`` (see :func:`skbn._core.views.channel_view` and
:func:`~skbn._core.views.layer_view`), the normalize step with per-channel
``gamma``/``beta``, and the backward pass.

Layer norm is one group of all of a sample's values, instance norm one group
per channel, group norm anything between.
"""

import numpy as np

from .. import _config
from .._kernels import cpu
from . import norm, plan
from .moments import Moments, moments, reject_missing
from .views import Layout

# Groups of fewer values than this take their moments from the rows kernel
# on a transposed chunk, longer ones from the segments kernel (measured on
# 1M x 64 and 8M x 8 float32: 2x and 1.5x faster that way; from 256 values
# on the segments kernel is as fast or faster).
TRANSPOSE_BELOW = 128


class GroupNames:
    """Names of the (sample, group) statistics, for the infinity error."""

    def __init__(self, n_groups, offset=0):
        self.n_groups = n_groups
        self.offset = offset

    def __getitem__(self, j):
        j += self.offset
        if self.n_groups == 1:
            return f"sample {j}"
        return f"sample {j // self.n_groups}, group {j % self.n_groups}"


def groups_moments(x5):
    """Moments per (sample, group) of a ``(N, S1, G, Cg, S2)`` view, flat.

    Parameters
    ----------
    x5 : ndarray

    Returns
    -------
    Moments
        Arrays of ``N * G`` values.
    """
    N, S1, G, Cg, S2 = x5.shape
    if S1 > 1:
        # Channels not first: bring each group's values together, once.
        x5 = np.ascontiguousarray(x5.transpose(0, 2, 3, 1, 4))
    x3 = x5.reshape(1, N * G, -1)
    # One feature per (sample, group): far too many for the per-task arrays
    # of moments(), so its kernels run on chunks of about a segment's worth
    # of values (see the chunked_moments kernel).
    k = x3.shape[2]
    chunk = max(1, _config.SEGMENT_LEN // k)
    kernel = plan.pick(cpu.chunked_moments, x3.size)
    res = kernel(x3, chunk, _config.SEGMENT_LEN, k < TRANSPOSE_BELOW)
    if cpu.all_finite(res[1], res[2]):
        return Moments(*res)
    # NaN (skipped) or infinity (refused): the general routine, by slices.
    step = max(chunk, 4096)
    parts = [
        moments(Layout(x3[:, f0 : f0 + step], (1,)), None, GroupNames(G, f0))
        for f0 in range(0, N * G, step)
    ]
    return Moments(*(np.concatenate(a) for a in zip(*parts, strict=True)))


def groups_normalize(x5, gamma, beta, eps, training):
    """Normalize per (sample, group); elementwise ``gamma``/``beta`` per channel.

    With ``training`` a NaN raises (the backward pass needs every value);
    without, NaN is left out of the statistics and stays NaN, as in the
    transformers.

    Parameters
    ----------
    x5 : ndarray of shape (N, S1, G, Cg, S2)
    gamma, beta : ndarray of shape (G * Cg,) or None
    eps : float
    training : bool

    Returns
    -------
    y5 : ndarray of ``x5``'s shape and dtype
    mean, inv_std : ndarray of shape (N, G)
    """
    N, S1, G, Cg, S2 = x5.shape
    mom = groups_moments(x5)
    if training:
        reject_missing(mom.count, S1 * Cg * S2)
    mean = mom.mean.reshape(N, G)
    inv = norm.inv_std(mom.var, eps).reshape(N, G)
    g = np.ones((G, Cg)) if gamma is None else gamma.reshape(G, Cg)
    b = np.zeros((G, Cg)) if beta is None else beta.reshape(G, Cg)
    y5 = np.empty_like(x5)
    kernel = plan.pick(cpu.groups_affine, x5.size)
    kernel(x5, mean, inv, g, b, y5)
    return y5, mean, inv


def groups_backward(x5, dy5, mean, inv_std, gamma):
    """The per-sample norms' backward pass, closed form, per (sample, group).

    Parameters
    ----------
    x5, dy5 : ndarray of shape (N, S1, G, Cg, S2), C-contiguous
    mean, inv_std : ndarray of shape (N, G)
    gamma : ndarray of shape (G * Cg,) or None

    Returns
    -------
    dx5 : ndarray of ``x5``'s shape and dtype
    dgamma, dbeta : ndarray of shape (G * Cg,), float64
    """
    N, S1, G, Cg, S2 = x5.shape
    g = np.ones((G, Cg)) if gamma is None else gamma.reshape(G, Cg)
    size = x5.size
    sums = plan.pick(cpu.groups_grad_sums, size)
    # Each task keeps its own per-channel sums: at most 1/16 of its share of
    # the data, or they would cost more than the data when the channels are
    # many and the samples few (layer norm over whole images).
    n_tasks = max(1, min(plan.n_tasks(size, N), N * S1 * S2 // 16))
    a, b, dgamma, dbeta = sums(x5, dy5, mean, inv_std, g, n_tasks)
    m = S1 * Cg * S2
    dx5 = np.empty_like(x5)
    kernel = plan.pick(cpu.groups_grad_dx, size)
    kernel(x5, dy5, mean, inv_std, g, inv_std * a / m, inv_std**3 * b / m, dx5)
    return dx5, dgamma.reshape(-1), dbeta.reshape(-1)
