"""skbn against its peers, on the same machine in the same asv run.

``peer`` is a parameter: ``skbn``, ``numpy`` (a plain NumPy batch-norm
class, as a tutorial writes it), ``StandardScaler`` (scikit-learn) and
``torch`` (``torch.nn.functional`` on the CPU); the peers are
``skbn._bench``'s, the ones ``skbn bench`` prints.  A case a peer does not
cover (torch without torch installed, ``StandardScaler`` on 4-D data, an
operation a peer has no equivalent of) raises ``NotImplementedError``, which
asv reports as skipped.

This is the full profile's bulk: ``asv run --bench bench_peers``.  skbn's own
history is ``bench_skbn.py``.
"""

import numpy as np

from skbn import functional as F
from skbn._bench import PEERS, Peer

try:  # asv imports the suites as the package ``benchmarks``
    from ._data import THREADS, array, set_threads
except ImportError:  # training_compare.py imports this module as a script's
    from _data import THREADS, array, set_threads

# name: (shape, dtype, order, feature axis): the rows of the benchmarks
# README's first table, one Fortran-ordered case and one small batch.
CASES = {
    "1M x 64 float32": ((1_000_000, 64), "float32", "C", -1),
    "1M x 64 float32 F-order": ((1_000_000, 64), "float32", "F", -1),
    "1M x 64 float64": ((1_000_000, 64), "float64", "C", -1),
    "10M x 4 float32": ((10_000_000, 4), "float32", "C", -1),
    "100k x 1024 float32": ((100_000, 1024), "float32", "C", -1),
    "NCHW 64x64x56x56 float32": ((64, 64, 56, 56), "float32", "C", 1),
    "256 x 64 float32": ((256, 64), "float32", "C", -1),
}
PEER_NAMES = ["skbn", "numpy", "StandardScaler", "torch"]


class _Comparison:
    """asv's timing settings for a comparison: one process, 1 to 5 samples.

    asv's default is two processes of up to 5 samples or 10 s each; the
    ratios between peers are what a comparison shows (``skbn bench`` measures
    them better, interleaved), so this halves the full profile's run time.
    """

    rounds = 1
    repeat = (1, 5, 10.0)
    timeout = 600


def make_peer(name, X, axis):
    cls = PEERS[name]
    kwargs = {"threads": THREADS} if name == "torch" else {}
    return cls, cls(X, axis, **kwargs)


class _Operation(_Comparison):
    """Times ``peer.<operation>(X)`` for every case and peer."""

    operation = None
    params = [list(CASES), PEER_NAMES]
    param_names = ["case", "peer"]

    def setup(self, case, peer):
        set_threads()
        shape, dtype, order, axis = CASES[case]
        X = array(shape, dtype, order)
        cls, self.peer = make_peer(peer, X, axis)
        if getattr(cls, self.operation) is Peer._missing:
            raise NotImplementedError(f"{peer} has no {self.operation}")
        self.f = getattr(self.peer, self.operation)
        self.X = (
            getattr(self.peer, "Y", X) if self.operation == "inverse_transform" else X
        )
        self.f(self.X)  # compile, and fault in the pages of first use

    def time_op(self, case, peer):
        self.f(self.X)


class Fit(_Operation):
    operation = "fit"


class PartialFit(_Operation):
    operation = "partial_fit"


class Transform(_Operation):
    operation = "transform"


class FitTransform(_Operation):
    operation = "fit_transform"


class PartialFitTransform(_Operation):
    operation = "partial_fit_transform"


class InverseTransform(_Operation):
    operation = "inverse_transform"


class PartialFitStream(_Comparison):
    """A streaming loop: ``partial_fit`` over 100 batches of 256 x 64."""

    params = [["float32", "float64"], PEER_NAMES]
    param_names = ["dtype", "peer"]
    n_batches = 100

    def setup(self, dtype, peer):
        set_threads()
        self.batches = [array((256, 64), dtype, which=i) for i in range(self.n_batches)]
        cls, self.peer = make_peer(peer, self.batches[0], -1)
        if cls.partial_fit is Peer._missing:
            raise NotImplementedError(f"{peer} has no partial_fit")
        self.peer.partial_fit(self.batches[0])

    def time_partial_fit_100_batches(self, dtype, peer):
        for b in self.batches:
            self.peer.partial_fit(b)


# Training: name: (shape, axis).  axis is the feature axis of batch norm and
# the channel axis of group and instance norm; layer norm normalizes every
# axis but 0.
TRAINING_SHAPES = {
    "1M x 64": ((1_000_000, 64), 1),
    "NCHW 32x64x56x56": ((32, 64, 56, 56), 1),
}
NORMS = ["batch", "layer", "group", "instance"]
N_GROUPS = 8


def skbn_training(norm, x, dy, axis):
    """``forward``, ``backward`` (of one cache) and ``forward_backward``."""
    pshape = (x.shape[axis],) if norm != "layer" else x.shape[1:]
    gamma = np.ones(pshape, x.dtype)
    beta = np.zeros(pshape, x.dtype)
    if norm == "batch":
        kwargs = {"axis": axis}
    elif norm == "layer":
        kwargs = {"axis": tuple(range(1, x.ndim))}
    elif norm == "group":
        kwargs = {"axis": axis, "n_groups": N_GROUPS}
    else:
        kwargs = {"axis": axis}
    forward = getattr(F, f"{norm}_norm_forward")
    backward = getattr(F, f"{norm}_norm_backward")
    _, cache = forward(x, gamma, beta, **kwargs)

    def forward_backward():
        _, c = forward(x, gamma, beta, **kwargs)
        return backward(dy, c)

    return (
        lambda: forward(x, gamma, beta, **kwargs),
        lambda: backward(dy, cache),
        forward_backward,
    )


def torch_training(norm, x, dy, axis, threads=THREADS):
    """The same three with ``torch.nn.functional`` and autograd."""
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

    def forward():
        if norm == "batch":
            return tf.batch_norm(tx, None, None, w, b, training=True)
        if norm == "layer":
            return tf.layer_norm(tx, pshape, w, b)
        if norm == "group":
            return tf.group_norm(tx, N_GROUPS, w, b)
        return tf.instance_norm(tx, weight=w, bias=b)

    def clear():
        # Gradients accumulate across backward calls otherwise, which would
        # time an extra addition.
        for t in (tx, w, b):
            t.grad = None

    y = forward()

    def backward():
        clear()
        y.backward(tdy, retain_graph=True)

    def forward_backward():
        clear()
        forward().backward(tdy)

    return forward, backward, forward_backward


class Training(_Comparison):
    """Forward, backward and both, skbn against torch, float32."""

    params = [list(TRAINING_SHAPES), NORMS, ["skbn", "torch"]]
    param_names = ["shape", "norm", "peer"]

    def setup(self, shape, norm, peer):
        set_threads()
        shape, axis = TRAINING_SHAPES[shape]
        if norm == "instance" and len(shape) < 3:
            raise NotImplementedError("instance norm needs a spatial axis")
        x = array(shape)
        dy = array(shape, offset=0.0, which=1)
        make = skbn_training if peer == "skbn" else torch_training
        self.forward, self.backward, self.forward_backward = make(norm, x, dy, axis)
        self.forward_backward()  # compile, and fault in the pages of first use

    def time_forward(self, shape, norm, peer):
        self.forward()

    def time_backward(self, shape, norm, peer):
        self.backward()

    def time_forward_backward(self, shape, norm, peer):
        self.forward_backward()
