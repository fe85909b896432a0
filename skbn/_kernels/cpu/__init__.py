"""Numba CPU kernels, split by job.

Every kernel takes validated, C-contiguous float32/float64 arrays and checks
nothing; the wrappers in :mod:`skbn._core` validate, choose the layout and
allocate.  Two layouts cover every supported input without copying it:

* rows ``(n, d)``: statistics per column (2-D data, channels-last images);
* segments ``(outer, c, inner)``: statistics per channel over ``outer`` and
  ``inner`` (``axis=1`` on ``(N, C, H, W)``, Fortran-ordered 2-D data seen
  through its transpose).

Moments are ``(count, mean, M2)`` per feature, accumulated in float64 whatever
the input dtype.  Each cache-resident block is reduced on its own (two-pass,
or shifted sums with an exactness guard, see :func:`rows_moments`; never the
cancelling ``E[x^2] - E[x]^2``) and blocks are then combined with the pairwise
update of Chan, Golub and LeVeque (1979)::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

The work is cut into a number of tasks that depends on the shape only (see
``skbn._config``); each task merges its blocks in order and the tasks are
merged in order, so results are bit-identical for any thread count.

Modules:

* :mod:`.common`: the JIT option dicts, a parallel kernel and its serial
  twin compiled by one decorator;
* :mod:`.tasks`: how a kernel cuts its work (blocks, tasks, segment units);
* :mod:`.formulas`: the per-block and per-feature formulas (merges, a
  block's M2, the coefficients, the running-statistics update);
* :mod:`.lanes`: sums along a run in explicit lanes;
* :mod:`.moments`: the moment kernels of every layout, dense and masked;
* :mod:`.affine`: the normalize step;
* :mod:`.small`: one compiled call per small batch;
* :mod:`.backward`: the backward passes and the per-sample normalize step;
* :mod:`.sparse`: scipy.sparse CSR and CSC data: structure check, moments,
  the normalize step that keeps zeros.

The public names of all of them are exported here.
"""

from .affine import (
    rows_affine,
    segments_affine,
)
from .backward import (
    chunked_moments,
    groups_affine,
    groups_grad_dx,
    groups_grad_sums,
    rows_grad_dx,
    rows_grad_sums,
    segments_grad_dx,
    segments_grad_sums,
    sum_tasks,
)
from .common import IEEE, JIT, SUMS_JIT, parallel_kernel
from .formulas import (
    MOMENTUM_POOLED,
    absolute_means,
    all_finite,
    chan_merge,
    coefficients,
    corrected_m2,
    ema_update,
    exact_sub,
    exact_sub_into,
    feature_scale,
    merge_moments,
    merge_task_moments,
    population_var,
    ratio,
    shifted_m2,
)
from .lanes import (
    LANES,
    fold_lanes,
    grad_lane_sums,
    lane_sums,
    masked_lane_sums,
    scaled_grad_lane_sums,
)
from .moments import (
    channels_moments,
    rows_moments,
    rows_moments_masked,
    segments_moments,
    segments_moments_masked,
    shift_reference,
)
from .small import (
    WRITE_BY_BATCH,
    WRITE_BY_RUNNING,
    WRITE_NOTHING,
    small_apply,
    small_train,
)
from .sparse import (
    BAD_INDEX,
    BAD_INDPTR,
    VALID,
    check_structure,
    count_inf,
    csc_moments,
    csr_deviations,
    csr_sums,
    finish_tables,
    is_canonical,
    scale_by_index,
    scale_by_slice,
    sum_tables,
)
from .tasks import segment_unit, task_range

__all__ = [
    "BAD_INDEX",
    "BAD_INDPTR",
    "VALID",
    "is_canonical",
    "check_structure",
    "count_inf",
    "csc_moments",
    "csr_deviations",
    "csr_sums",
    "finish_tables",
    "sum_tables",
    "scale_by_index",
    "scale_by_slice",
    "IEEE",
    "JIT",
    "LANES",
    "MOMENTUM_POOLED",
    "SUMS_JIT",
    "WRITE_BY_BATCH",
    "WRITE_BY_RUNNING",
    "WRITE_NOTHING",
    "absolute_means",
    "all_finite",
    "chan_merge",
    "channels_moments",
    "chunked_moments",
    "coefficients",
    "corrected_m2",
    "ema_update",
    "exact_sub",
    "exact_sub_into",
    "fold_lanes",
    "grad_lane_sums",
    "groups_affine",
    "groups_grad_dx",
    "groups_grad_sums",
    "lane_sums",
    "masked_lane_sums",
    "merge_moments",
    "merge_task_moments",
    "population_var",
    "feature_scale",
    "ratio",
    "rows_affine",
    "rows_grad_dx",
    "rows_grad_sums",
    "rows_moments",
    "rows_moments_masked",
    "scaled_grad_lane_sums",
    "segment_unit",
    "segments_affine",
    "segments_grad_dx",
    "segments_grad_sums",
    "segments_moments",
    "segments_moments_masked",
    "parallel_kernel",
    "shift_reference",
    "shifted_m2",
    "small_apply",
    "small_train",
    "sum_tasks",
    "task_range",
]
