"""The training path: forward + backward of the four normalizations, skbn
(``skbn.functional``) against ``torch.autograd`` on the CPU, same shapes.

``impl`` is a parameter, so one asv run compares both on the same machine; a
combination an implementation does not cover raises ``NotImplementedError``
(asv skips it).  Data is seeded and built once per process; JIT compilation
and torch's first-call setup happen in ``setup``.  ``benchmarks/
training_compare.py`` prints the same cases as an interleaved median table.
"""

import os

import numba
import numpy as np

from skbn import functional as F

# name: (shape, axis).  axis is the feature axis for batch norm, the channel
# axis for group and instance norm; layer norm normalizes every axis but 0.
SHAPES = {
    "1M x 64": ((1_000_000, 64), 1),
    "NCHW 32x64x56x56": ((32, 64, 56, 56), 1),
    "256 x 64": ((256, 64), 1),
}
NORMS = ["batch", "layer", "group", "instance"]
N_GROUPS = 8
THREADS = int(os.environ.get("SKBN_BENCH_THREADS", "2"))
_DATA = {}


def data(shape, dtype):
    """Seeded ``x`` and ``dy``, built once per process and shape."""
    key = (shape, dtype)
    if key not in _DATA:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        x += 3.0
        dy = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        _DATA.clear()  # keep one case alive: some are 500 MB an array
        _DATA[key] = (x, dy)
    return _DATA[key]


def _skbn_pair(norm, x, axis):
    n_params = x.shape[axis] if norm != "layer" else int(np.prod(x.shape[1:]))
    pshape = (n_params,) if norm != "layer" else x.shape[1:]
    gamma = np.ones(pshape, x.dtype)
    beta = np.zeros(pshape, x.dtype)
    if norm == "batch":
        fwd = lambda v: F.batch_norm_forward(v, gamma, beta, axis=axis)  # noqa: E731
    elif norm == "layer":
        axes = tuple(range(1, x.ndim))
        fwd = lambda v: F.layer_norm_forward(v, gamma, beta, axis=axes)  # noqa: E731
    elif norm == "group":

        def fwd(v):
            return F.group_norm_forward(v, gamma, beta, n_groups=N_GROUPS, axis=axis)

    else:
        fwd = lambda v: F.instance_norm_forward(v, gamma, beta, axis=axis)  # noqa: E731
    bwd = getattr(F, f"{norm}_norm_backward")
    return fwd, bwd


def skbn_callables(norm, x, dy, axis):
    """``forward``, ``backward`` (of a cache made once) and ``forward_backward``."""
    fwd, bwd = _skbn_pair(norm, x, axis)
    _, cache = fwd(x)

    def forward_backward():
        _, c = fwd(x)
        return bwd(dy, c)

    return (lambda: fwd(x)), (lambda: bwd(dy, cache)), forward_backward


def torch_callables(norm, x, dy, axis, threads=THREADS):
    """The same three for ``torch.nn.functional`` and autograd (channels on 1)."""
    try:
        import torch
    except ImportError as e:
        raise NotImplementedError("torch is not installed") from e
    if axis != 1:
        raise NotImplementedError("torch normalizes channels on axis 1")
    torch.set_num_threads(threads)
    tf = torch.nn.functional
    tx = torch.from_numpy(x).requires_grad_(True)
    tdy = torch.from_numpy(dy)
    pshape = (x.shape[1],) if norm != "layer" else x.shape[1:]
    w = torch.ones(pshape, dtype=tx.dtype, requires_grad=True)
    b = torch.zeros(pshape, dtype=tx.dtype, requires_grad=True)
    leaves = (tx, w, b)

    def fwd():
        if norm == "batch":
            return tf.batch_norm(tx, None, None, w, b, training=True)
        if norm == "layer":
            return tf.layer_norm(tx, pshape, w, b)
        if norm == "group":
            return tf.group_norm(tx, N_GROUPS, w, b)
        return tf.instance_norm(tx, weight=w, bias=b)

    def clear():
        for t in leaves:
            t.grad = None

    y = fwd()

    def bwd():
        clear()
        y.backward(tdy, retain_graph=True)

    def forward_backward():
        clear()
        fwd().backward(tdy)

    return fwd, bwd, forward_backward


def callables(impl, norm, shape_name, dtype):
    shape, axis = SHAPES[shape_name]
    if norm == "instance" and len(shape) < 3:
        raise NotImplementedError("instance norm needs a spatial axis")
    x, dy = data(shape, dtype)
    make = skbn_callables if impl == "skbn" else torch_callables
    return make(norm, x, dy, axis)


class _Training:
    """Times one of the three callables over the parameter grid."""

    which = None  # 0 forward, 1 backward, 2 forward + backward
    params = (["float32", "float64"], list(SHAPES), NORMS, ["skbn", "torch"])
    param_names = ["dtype", "shape", "norm", "impl"]
    timeout = 600

    def setup(self, dtype, shape, norm, impl):
        numba.set_num_threads(THREADS)
        self.f = callables(impl, norm, shape, dtype)[self.which]
        self.f()  # compile, and fault in the pages of first use

    def time_op(self, dtype, shape, norm, impl):
        self.f()

    def peakmem_op(self, dtype, shape, norm, impl):
        self.f()


class Forward(_Training):
    which = 0


class Backward(_Training):
    which = 1


class ForwardBackward(_Training):
    which = 2
