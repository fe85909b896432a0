"""Small batches: one compiled call per estimator call.

A streaming loop calls partial_fit / partial_fit_transform / transform on
batches of a few hundred rows, where each kernel dispatch and each Python
step costs as much as the arithmetic.  These compose the kernels of the
other modules (no second implementation of any formula) into a single
dispatch for the rows layout with one task and the serial kernels, the
configuration that skbn._core.plan chooses for such inputs, so the results
are bit-identical to the general path.
"""

from numba import njit

from .affine import rows_affine
from .common import JIT
from .formulas import all_finite, coefficients, ema_update, population_var
from .moments import rows_moments

# Compiled code calls a module-level function, not an attribute of one.
rows_affine_serial = rows_affine.serial
rows_moments_serial = rows_moments.serial

# What :func:`small_train` writes into ``out`` (its ``normalize`` argument):
# nothing, the batch normalized by its own statistics (training mode), or
# normalized by the updated running statistics (``fit_transform``).
WRITE_NOTHING = 0
WRITE_BY_BATCH = 1
WRITE_BY_RUNNING = 2


@njit(**JIT)
def small_train(
    x, block, running_mean, running_var, seen, momentum, mixture, params, out, normalize
):
    """Batch moments, the running-statistics update and, with ``normalize``,
    ``x`` normalized into ``out``.

    ``normalize`` is ``WRITE_NOTHING`` (no output), ``WRITE_BY_BATCH`` (by
    the batch's own statistics: the training mode) or ``WRITE_BY_RUNNING``
    (by the updated running statistics: ``fit_transform``).  ``momentum`` is
    and ``mixture`` are as in :func:`~.formulas.ema_update`
    (``MOMENTUM_POOLED`` for pooled statistics).
    ``params`` is ``(gamma, beta, eps, use_gamma, use_beta)``.  Returns
    ``ok, mean, var, seen``; ``ok`` is False when the batch holds a NaN or an
    infinity (the caller then takes the general path, which handles both) and
    nothing is to be used.
    """
    count, mean, m2 = rows_moments_serial(x, block, 1)
    if not all_finite(mean, m2):
        return False, running_mean, running_var, seen
    new_mean, new_var, new_seen = ema_update(
        running_mean, running_var, seen, count, mean, m2, momentum, mixture
    )
    if not all_finite(new_mean, new_var):
        # An overflowing update: the general path raises, changing nothing.
        return False, running_mean, running_var, seen
    if normalize != WRITE_NOTHING:
        gamma, beta, eps, use_gamma, use_beta = params
        if normalize == WRITE_BY_BATCH:
            shift, var = mean, population_var(m2, count)
        else:
            shift, var = new_mean, new_var
        scale, offset = coefficients(var, gamma, beta, eps, use_gamma, use_beta)
        rows_affine_serial(x, shift, scale, offset, out, block)
    return True, new_mean, new_var, new_seen


@njit(**JIT)
def small_apply(x, block, mean, var, params, out):
    """Inference-mode normalize of ``x`` into ``out``; returns the
    non-finite flag of :func:`rows_affine`."""
    gamma, beta, eps, use_gamma, use_beta = params
    scale, offset = coefficients(var, gamma, beta, eps, use_gamma, use_beta)
    return rows_affine_serial(x, mean, scale, offset, out, block)
