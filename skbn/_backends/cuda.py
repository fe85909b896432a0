"""The CUDA backend: the same operations as the NumPy backend, on the GPU.

Batches are validated with the NumPy backend's rules (on the array's
metadata: GPU data is never read back for a check), laid out by
:mod:`skbn._backends.cuda_arrays` and computed by the kernels of
:mod:`skbn._kernels.cuda`, which implement the formulas of
:mod:`skbn._core` (Chan's merge, the corrected two-pass per block, the same
coefficients).  Running statistics stay NumPy arrays on the host: the
moments of a batch come back to the host (a few values per feature) and are
folded in by the routines the CPU uses.  The training-mode forward is fused:
the statistics and the normalized batch come from one sequence of kernels.

``device="cuda"`` with host data copies it to the GPU once and the result
back; ``device="auto"`` follows the data.
"""

import numpy as np

from .._core.moments import Moments, raise_inf, reject_missing
from .._core.moments import moments as host_moments
from .._core.norm import SpanStats, coefficients
from .._core.views import Layout, normalize_axis
from .._validation import validate_metadata, validate_sample_weight, validate_X
from .common import never_small, refused
from .cuda_arrays import (
    INSTALL,
    CudaLayout,
    DeviceArrays,
    check_device,
    cuda_module,
    device_view,
    interface,
    is_cuda,
    kernels,
    on_cuda,
    unavailable_reason,
)

__all__ = ["check_device", "is_cuda", "on_cuda", "unavailable_reason"]

NAME = "cuda"


def refuse_half(dtype, name):
    """float16 does not run on the GPU path (its kernels compile for float32
    and float64); say so rather than return another dtype.

    Parameters
    ----------
    dtype : numpy.dtype
    name : str
        The argument's name, for the message.
    """
    if dtype == np.float16:
        raise TypeError(
            f"{name} has dtype float16, which skbn's CUDA path does not run; "
            f"convert {name} to float32 on the GPU (as torch autocast does for "
            "batch norm), or run it on the CPU (device='cpu' with host data), "
            "where float16 is kept."
        )


def validate(X, spec, *, reset):
    """Check GPU (or, with ``device="cuda"``, host) input ``X``.

    The CUDA counterpart of :func:`skbn._validation.validate_X`: the same
    rules and messages.  Host input goes through ``validate_X`` itself and is
    copied to the GPU once.

    Parameters
    ----------
    X : object
    spec : skbn._validation.Spec
    reset : bool

    Returns
    -------
    layout : CudaLayout
    n_features : int
    """
    if not is_cuda(X):
        X, axes, n_features = validate_X(X, spec, reset=reset)
        refuse_half(X.dtype, "X")
        # C order, so that sample weights repeat along ``outer`` only (see
        # CudaLayout.device_weights); the result comes back in X's order.
        layout = Layout.c_ordered(X, axes)
        arrays = DeviceArrays(X, gpu=False)
        x3 = cuda_module().to_device(layout.x3, stream=arrays.stream)
        # copy=False writes the result back into the host view, as on the CPU.
        in_place = layout.x3.flags.writeable
        cl = CudaLayout(arrays, x3, X.shape, axes, None, layout, in_place)
        return cl, n_features
    iface = interface(X)
    shape = tuple(int(n) for n in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    refuse_half(dtype, "X")
    axes, n_features = validate_metadata(
        X, shape, dtype, spec, reset=reset, kind="CUDA array"
    )
    arrays = DeviceArrays(X, gpu=True)
    x3, perm, in_place = device_view(arrays, X, iface, axes)
    return CudaLayout(arrays, x3, shape, axes, perm, None, in_place), n_features


def _host_weights(sample_weight, layout):
    """Validated host weights; GPU weights are copied to the host first."""
    if sample_weight is None:
        return None
    if is_cuda(sample_weight):
        arrays = DeviceArrays(sample_weight, gpu=True)
        sample_weight = arrays.view(sample_weight).copy_to_host()
    # validate_sample_weight reads only the sample count of X.
    stand_in = np.empty((layout.shape[0], 0))
    return validate_sample_weight(sample_weight, stand_in, layout.axes)


def _host_error(layout, w_host, names):
    """The CPU path's error for statistics that are not finite: computed on a
    host copy (only on this failure path), so the messages are identical."""

    def raise_it():
        x3 = layout.x3.copy_to_host()
        host_moments(Layout(x3, (1,)), w_host, names)

    return raise_it


def _run_moments(layout, sample_weight, feature_names, fused=None):
    w_host = _host_weights(sample_weight, layout)
    w, w_host = layout.device_weights(w_host)
    error = _host_error(layout, w_host, feature_names)
    options = layout.backend.launch_options()
    if fused is None:
        return Moments(*kernels().moments(layout.x3, w, error, **options)), None
    gamma, beta, eps = fused
    view, obj = layout.empty_out()
    res = kernels().forward(
        layout.x3, w, gamma, beta, float(eps), view, error, **options
    )
    return Moments(*res), layout.restore(view, obj)


def moments(layout, sample_weight, feature_names=None):
    """Moments of a validated batch, computed on the GPU.

    Returns
    -------
    skbn._core.moments.Moments
        On the host.
    """
    return _run_moments(layout, sample_weight, feature_names)[0]


def train_forward(layout, sample_weight, gamma, beta, eps, feature_names=None):
    """The batch's moments and the batch normalized by them, in one sequence
    of kernels.

    Returns
    -------
    batch : Moments
    y : object of the input's kind
    """
    return _run_moments(layout, sample_weight, feature_names, (gamma, beta, eps))


# Ghost batches and Batch Renormalization run on the CPU only.
train_normalize = refused(
    "train_normalize",
    "renorm and virtual_batch_size run on the CPU only; got CUDA "
    "input (or device='cuda'). Use device='cpu' with host data.",
)


def output_buffer(layout, copy, feature_names=None):
    """``layout.x3`` when the output may overwrite the input, else None."""
    return layout.x3 if not copy and layout.in_place else None


small_input = never_small


def normalize(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature on the GPU.

    The CUDA counterpart of :func:`skbn._core.norm.affine`.

    Parameters
    ----------
    layout : CudaLayout
    shift, scale, offset : ndarray of shape (n_features,), float64
    out : device array or None
        ``layout.x3`` to write in place (see :func:`output_buffer`).
    feature_names : sequence of str, optional

    Returns
    -------
    object
        The result, of the input's kind and shape.
    """
    backend = layout.backend
    # The kernel finds an infinite input only while it writes, so writing
    # into GPU input itself (copy=False) would leave it half overwritten
    # when it raises.  Such input is written into a new buffer first and
    # copied over on success.  Host input is on the device as a copy anyway:
    # restore writes it back only after the kernel succeeded.
    staged = out is not None and backend.kind != "host"
    if out is None or staged:
        view, obj = layout.empty_out()
    else:
        view, obj = out, None

    def error():
        raise_inf(layout.x3.copy_to_host(), feature_names)

    kernels().affine(
        layout.x3,
        shift,
        scale,
        offset,
        view,
        error,
        **backend.launch_options(),
    )
    if staged:
        out.copy_to_device(view, stream=backend.stream)
        view, obj = out, None
    return layout.restore(view, obj, into_input=out is not None)


# -- the functional API on GPU arrays --


def layout_of(x, axis):
    """The kernels' view of a GPU array ``x`` for the functional API.

    Parameters
    ----------
    x : CUDA array, at least 2-D and not empty
    axis : int or tuple of int

    Returns
    -------
    CudaLayout
    """
    if (reason := unavailable_reason()) is not None:
        raise ValueError(f"CUDA is not available to skbn: {reason}. {INSTALL}.")
    ix = interface(x)
    shape = tuple(int(n) for n in ix["shape"])
    dtype = np.dtype(ix["typestr"])
    refuse_half(dtype, "x")
    if dtype.kind not in "biuf":
        raise TypeError(
            f"x must hold real numbers (float32 or float64); got dtype {dtype}."
        )
    if len(shape) < 2 or 0 in shape:
        raise ValueError(
            f"x must have at least 2 dimensions (samples, features) and no empty "
            f"one; got shape {shape}."
        )
    axes = normalize_axis(axis, len(shape))
    arrays = DeviceArrays(x, gpu=True)
    x3, perm, _ = device_view(arrays, x, ix, axes)
    return CudaLayout(arrays, x3, shape, axes, perm, None, False)


def forward(layout, gamma, beta, eps, running, renorm, vbs, training):
    """Batch norm forward of a GPU batch: :func:`skbn._core.norm.forward`
    for one span (no Batch Renormalization, no ghost batches).

    Parameters
    ----------
    layout : CudaLayout
        From :func:`layout_of`.
    gamma, beta : ndarray of shape (n_features,) or None
    eps : float
    running : tuple of ndarray or None
        Host running statistics; inference mode normalizes by them.
    renorm, vbs : None
        Anything else is refused.
    training : bool

    Returns
    -------
    y : object of the input's kind
    stats : SpanStats
    batch : Moments or None
        The batch's moments in training mode (on the host).
    """
    if renorm is not None or vbs is not None:
        raise ValueError(
            "renorm and virtual_batch_size run on the CPU only; got a CUDA array."
        )
    outer, d, inner = layout.x3.shape
    gamma = np.ones(d) if gamma is None else gamma
    beta = np.zeros(d) if beta is None else beta
    if not training:
        mean, var = running
        scale, offset = coefficients(var, gamma, beta, eps)
        y = normalize(layout, mean, scale, offset)
        return y, SpanStats.of_running(outer, mean, var, eps), None
    batch, y = train_forward(layout, None, gamma, beta, eps)
    reject_missing(batch.count, outer * inner)
    stats = SpanStats.of_moments([(0, outer)], Moments(*(a[None] for a in batch)), eps)
    return y, stats, batch


def backward(layout, dy, mean, inv_std, gamma, training):
    """Batch norm backward on the GPU, for a :func:`forward` call.

    Parameters
    ----------
    layout : CudaLayout
        The forward input's.
    dy : CUDA array of the forward input's shape
    mean, inv_std : ndarray of shape (n_features,), float64
        What the forward pass normalized with.
    gamma : ndarray of shape (n_features,), float64
    training : bool

    Returns
    -------
    dx : object of the input's kind, shape and float dtype
    dgamma, dbeta : ndarray of shape (n_features,), float64, on the host
    """
    if not is_cuda(dy):
        raise TypeError(
            f"dy must be a CUDA array like the forward input; got {type(dy).__name__}."
        )
    ig = interface(dy)
    shape = tuple(int(n) for n in ig["shape"])
    if shape != layout.shape:
        raise ValueError(
            f"dy has shape {shape}, but the forward input had shape {layout.shape}."
        )
    arrays = layout.backend
    g3, _, _ = device_view(arrays, dy, ig, layout.axes)
    if g3.dtype != layout.x3.dtype:
        raise TypeError(
            f"dy has dtype {g3.dtype}, but the forward input had {layout.x3.dtype}."
        )
    view, obj = layout.empty_out()
    s, q = kernels().backward(
        layout.x3,
        g3,
        mean,
        inv_std,
        gamma,
        bool(training),
        view,
        **arrays.launch_options(),
    )
    return layout.restore(view, obj), inv_std * q, s
