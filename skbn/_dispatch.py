"""Where the data lives decides the path: NumPy on the CPU, or CUDA.

``device="auto"`` follows the data: an object that exposes
``__cuda_array_interface__`` (a Numba device array, a CuPy array, a PyTorch
CUDA tensor) runs on the GPU through :mod:`skbn._kernels.cuda`, and the result
comes back as the same kind of object (a Numba device array for other kinds).
``device="cuda"`` also accepts host data: it is copied to the GPU, and the
result back to a NumPy array.  ``device="cpu"`` refuses GPU data rather than
copying it behind the user's back.  Running statistics always stay NumPy
arrays on the host, so pickling, ``clone`` and scikit-learn's checks work.

Nothing here imports ``numba.cuda``, torch or CuPy at module level, and the
checks for GPU data only look at attributes: ``import skbn`` never initializes
CUDA, and NumPy users never pay for it.

On the GPU path the kernels read a C-contiguous ``(outer, features, inner)``
view, as on the CPU (:class:`skbn._layout.Layout`).  A C-contiguous float32 or
float64 input whose feature axes form one block is used in place; anything
else (strided, Fortran-ordered, integer, a non-adjacent set of feature axes)
is first gathered into a contiguous float array on the GPU by one kernel, and
the output is always C-contiguous.  Outputs and scratch buffers of a PyTorch or
CuPy input are allocated by that library (its caching allocator, its current
stream and device); the kernels run on that library's current stream, so the
result is ordered with the user's other work without a device-wide
synchronization.

Under ``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator, used by the tests on
machines without a GPU) device memory is host memory: a simulated device array
or any object whose ``__cuda_array_interface__`` points at host memory is
accepted and the same kernels run in the simulator.
"""

import sys
from functools import cache
from math import prod

import numpy as np

from . import _moments
from ._layout import Layout, normalize_axis
from ._validation import (
    FLOAT_TYPES,
    feature_vector,
    validate_metadata,
    validate_sample_weight,
    validate_X,
)

_INSTALL = (
    "Install the CUDA extra (pip install 'skbn[cuda]') on a machine with an "
    "NVIDIA GPU and driver"
)


# -- where is the data ------------------------------------------------------------


def is_cuda(X) -> bool:
    """True when ``X`` lives in GPU memory (looks at attributes only).

    Numba device arrays (and the simulator's) carry ``__cuda_ndarray__``;
    CuPy arrays, PyTorch CUDA tensors and others ``__cuda_array_interface__``
    (a CPU tensor raises ``AttributeError`` for it, which reads as False).
    """
    if type(X) is np.ndarray:
        return False
    if getattr(X, "__cuda_ndarray__", False) is True:
        return True
    return getattr(X, "__cuda_array_interface__", None) is not None


@cache
def unavailable_reason():
    """Why the CUDA path cannot run here, or None when it can.

    Imports ``numba.cuda`` and asks the driver, so it is only called when a
    CUDA path is requested.  The answer does not change within a process.
    """
    try:
        from numba import cuda
    except Exception as exc:  # ImportError, or a broken CUDA toolkit
        return f"numba.cuda cannot be imported ({exc})"
    try:
        if not cuda.is_available():
            return "no CUDA GPU or driver was found"
    except Exception as exc:
        return f"the CUDA driver failed to initialize ({exc})"
    try:
        from ._kernels import cuda as _  # noqa: F401
    except Exception as exc:
        return f"skbn's CUDA kernels cannot be imported ({exc})"
    return None


def check_device(device):
    """Raise ``ValueError`` when ``device="cuda"`` cannot run here."""
    if device == "cuda" and (reason := unavailable_reason()) is not None:
        raise ValueError(
            f"device='cuda' is not available: {reason}. {_INSTALL}, or use "
            "device='cpu' or device='auto'."
        )


def on_cuda(device, X) -> bool:
    """Decide the path of one call: True for CUDA.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
    X : object
        The input of the call.

    Returns
    -------
    bool
    """
    if device == "cuda":
        return True
    gpu = is_cuda(X)
    if device == "cpu" and gpu:
        raise ValueError(
            f"X is a CUDA array ({type(X).__name__}) but device='cpu'; copy it to "
            "host memory first (for example tensor.cpu()), or use device='auto'."
        )
    if gpu and (reason := unavailable_reason()) is not None:
        raise ValueError(
            f"X is a CUDA array ({type(X).__name__}) but CUDA is not available "
            f"to skbn: {reason}. {_INSTALL}, or copy X to host memory."
        )
    return gpu


# -- the CUDA modules, imported on first use ----------------------------------------


def _cuda():
    from numba import cuda

    return cuda


def _kernels():
    from ._kernels import cuda as kernels

    return kernels


def _simulated():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


# -- foreign arrays ------------------------------------------------------------------


def _interface(X):
    """The CUDA array interface of ``X`` (the simulator's arrays: its host
    array's interface, whose pointer is as good as a device pointer there)."""
    iface = getattr(X, "__cuda_array_interface__", None)
    if iface is None:
        iface = X._ary.__array_interface__
    return iface


def _c_strides(shape, itemsize):
    strides = []
    acc = itemsize
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


class _Described:
    """An object that only carries an array interface (and keeps an owner)."""

    def __init__(self, iface, owner):
        self._iface = iface
        self._owner = owner

    @property
    def __cuda_array_interface__(self):
        return self._iface

    @property
    def __array_interface__(self):  # the simulator reads host memory
        return self._iface


def _wrap(iface, owner, sync):
    """A Numba device array over the memory that ``iface`` describes."""
    if _simulated():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        desc = dict(iface, version=3)
        desc.pop("stream", None)
        return FakeCUDAArray(np.asarray(_Described(desc, owner)))
    return _cuda().as_cuda_array(_Described(iface, owner), sync=sync)


class _Backend:
    """How to make device arrays of the input's kind, and on which stream.

    ``kind`` is ``"torch"``, ``"cupy"``, ``"numba"`` (Numba device arrays and
    any other object with the interface) or ``"host"`` (NumPy input with
    ``device="cuda"``).
    """

    def __init__(self, X, gpu):
        module = type(X).__module__.partition(".")[0]
        self.kind = "host"
        if gpu:
            self.kind = module if module in ("torch", "cupy") else "numba"
        self.X = X
        self.stream = 0
        if _simulated():
            self.key = ("simulator",)
        elif self.kind == "torch":
            ptr = sys.modules["torch"].cuda.current_stream(X.device).cuda_stream
            self.stream = _cuda().external_stream(ptr) if ptr else 0
            self.key = ("torch", X.device.index)
        elif self.kind == "cupy":
            ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
            self.stream = _cuda().external_stream(ptr) if ptr else 0
            self.key = ("cupy", X.device.id)
        else:
            # Numba allocates in its current context.
            self.key = ("numba", _cuda().get_current_device().id)

    def view(self, X):
        """A Numba device array over ``X``'s memory (no copy).

        With PyTorch and CuPy the kernels run on the library's current
        stream, which orders them after the work that produced ``X``: no need
        to synchronize on the stream named in the interface.
        """
        if getattr(X, "__cuda_ndarray__", False) is True:
            return X
        return _wrap(_interface(X), X, sync=self.kind not in ("torch", "cupy"))

    def empty(self, shape, dtype):
        """``(device view, object of the input's kind)`` of a new array."""
        dtype = np.dtype(dtype)
        if self.kind == "torch":
            torch = sys.modules["torch"]
            obj = torch.empty(
                shape, dtype=getattr(torch, dtype.name), device=self.X.device
            )
            return self.view(obj), obj
        if self.kind == "cupy":
            cupy = sys.modules["cupy"]
            with self.X.device:
                obj = cupy.empty(shape, dtype=dtype)
            return self.view(obj), obj
        arr = _cuda().device_array(shape, dtype=dtype, stream=self.stream)
        return arr, arr

    def alloc(self, shape, dtype):
        """A device array (for the kernels' scratch buffers)."""
        return self.empty(shape, dtype)[0]

    def launch_options(self):
        """Keyword arguments of the drivers in :mod:`skbn._kernels.cuda`."""
        return {"alloc": self.alloc, "key": self.key, "stream": self.stream}


# -- the layout of GPU data ---------------------------------------------------------


class CudaLayout:
    """A validated batch on the GPU in the kernels' 3-D layout.

    The CUDA counterpart of :class:`skbn._layout.Layout`, made by
    :func:`validate`.

    Attributes
    ----------
    x3 : Numba device array of shape (outer, n_features, inner)
        C-contiguous float32 or float64.
    shape : tuple of int
        Shape of the input.
    ndim : int
    axes : tuple of int
        The feature axes.
    in_place : bool
        True when ``x3`` is a view of the input (no copy, same dtype), so
        that writing the output into it honours ``copy=False``.
    normalized : object or None
        Set by :func:`batch_moments` with ``normalize=True``: the batch
        normalized by its own statistics, of the input's kind.
    """

    def __init__(self, backend, x3, shape, axes, perm, host_layout, in_place):
        self.backend = backend
        self.x3 = x3
        self.shape = shape
        self.ndim = len(shape)
        self.axes = axes
        self.perm = perm
        self.host_layout = host_layout
        self.in_place = in_place
        self.normalized = None

    def empty_out(self):
        """``(device view, object)`` for an output of ``x3``'s shape."""
        if self.backend.kind == "host":
            view = self.backend.alloc(self.x3.shape, self.x3.dtype)
            return view, None
        return self.backend.empty(self.x3.shape, self.x3.dtype)

    def restore(self, out3, obj, into_input=False):
        """The output ``out3`` in the input's shape and kind.

        ``into_input``: ``out3`` is ``x3`` itself (``copy=False``), for host
        input the result is copied back into the input's memory.
        """
        backend = self.backend
        if backend.kind == "host":
            layout = self.host_layout
            y3 = layout.x3 if into_input else None
            return layout.restore(out3.copy_to_host(y3, stream=backend.stream))
        if into_input:
            return backend.X
        if self.perm is None:
            return obj.reshape(self.shape)
        # Feature axes were moved last: scatter back into X's axis order.
        view, final = backend.empty(self.shape, out3.dtype)
        moved = tuple(self.shape[a] for a in self.perm)
        strides = _c_strides(moved, 1)
        src = [strides[self.perm.index(a)] for a in range(self.ndim)]
        _kernels().gather_into(
            out3.reshape(prod(moved)),
            0,
            src,
            self.shape,
            view.reshape(prod(self.shape)),
            stream=backend.stream,
        )
        return final

    def device_weights(self, w):
        """Per-sample weights (host, validated) as one weight per outer index.

        Axis 0 is never a feature axis when weights are given, and it stays
        the slowest axis of ``outer`` in the C-ordered layout: repeat.
        """
        if w is None:
            return None, None
        outer = self.x3.shape[0]
        host = np.ascontiguousarray(np.repeat(w, outer // self.shape[0]))
        dev = _cuda().to_device(host, stream=self.backend.stream)
        return dev, host


def _device_x3(backend, X, iface, axes):
    """The 3-D kernel view of GPU input ``X``: in place, or gathered."""
    shape = tuple(int(n) for n in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    lo, hi = axes[0], axes[-1]
    contiguous_block = hi - lo + 1 == len(axes)
    strides = iface.get("strides")
    c_order = strides is None or all(
        s == c or n == 1
        for s, c, n in zip(
            strides, _c_strides(shape, dtype.itemsize), shape, strict=True
        )
    )
    perm = None
    if contiguous_block and c_order and dtype.type in FLOAT_TYPES:
        x = backend.view(X)
        moved = shape
        in_place = True
    else:
        if not contiguous_block:
            perm = [a for a in range(len(shape)) if a not in axes] + list(axes)
            lo, hi = len(shape) - len(axes), len(shape) - 1
        order = perm or list(range(len(shape)))
        moved = tuple(shape[a] for a in order)
        x = _gather(backend, iface, X, order, moved, dtype)
        in_place = False
    outer, inner = prod(moved[:lo]), prod(moved[hi + 1 :])
    x3 = x.reshape(outer, prod(moved[lo : hi + 1]), inner)
    return x3, perm, in_place


def _gather(backend, iface, X, order, moved, dtype):
    """Copy strided GPU data into a C-contiguous float array, axes in ``order``."""
    shape = tuple(int(n) for n in iface["shape"])
    itemsize = dtype.itemsize
    strides = iface.get("strides") or _c_strides(shape, itemsize)
    if any(s % itemsize for s in strides):
        raise ValueError(
            f"X has strides {tuple(strides)} that are not a multiple of its item "
            f"size ({itemsize} bytes); make it contiguous first."
        )
    # A 1-D view over the span of memory that X touches (strides may be
    # negative: the span starts at the lowest address).
    low = sum(min(0, s * (n - 1)) for s, n in zip(strides, shape, strict=True))
    high = sum(max(0, s * (n - 1)) for s, n in zip(strides, shape, strict=True))
    ptr = iface["data"][0]
    span = dict(
        iface,
        shape=((high - low) // itemsize + 1,),
        strides=None,
        data=(ptr + low, False),
    )
    src = _wrap(span, X, sync=backend.kind not in ("torch", "cupy"))
    out_dtype = dtype if dtype.type in FLOAT_TYPES else np.dtype(np.float64)
    out = backend.alloc((prod(moved),), out_dtype)
    _kernels().gather_into(
        src,
        -low // itemsize,
        [strides[a] // itemsize for a in order],
        moved,
        out,
        stream=backend.stream,
    )
    return out


def validate(est, X, *, reset):
    """Check GPU (or, with ``device="cuda"``, host) input ``X`` for ``est``.

    The CUDA counterpart of :func:`skbn._validation.validate_X`: the same
    rules and messages.  Host input goes through ``validate_X`` itself and is
    copied to the GPU once.

    Returns
    -------
    layout : CudaLayout
    n_features : int
    """
    if not is_cuda(X):
        X, axes, n_features = validate_X(est, X, reset=reset)
        # C order, so that sample weights repeat along ``outer`` only (see
        # CudaLayout.device_weights); the result comes back C-ordered.
        layout = Layout(np.ascontiguousarray(X), axes)
        backend = _Backend(X, gpu=False)
        x3 = _cuda().to_device(layout.x3, stream=backend.stream)
        # copy=False writes the result back into the host view, as on the CPU.
        in_place = layout.x3.flags.writeable
        cl = CudaLayout(backend, x3, X.shape, axes, None, layout, in_place)
        return cl, n_features
    iface = _interface(X)
    shape = tuple(int(n) for n in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    axes, n_features = validate_metadata(
        est, X, shape, dtype, reset=reset, kind="CUDA array"
    )
    backend = _Backend(X, gpu=True)
    x3, perm, in_place = _device_x3(backend, X, iface, axes)
    return CudaLayout(backend, x3, shape, axes, perm, None, in_place), n_features


def _host_weights(sample_weight, layout):
    """Validated host weights; GPU weights are copied to the host first."""
    if sample_weight is None:
        return None
    if is_cuda(sample_weight):
        backend = _Backend(sample_weight, gpu=True)
        sample_weight = backend.view(sample_weight).copy_to_host()
    # validate_sample_weight reads only the sample count of X.
    stand_in = np.empty((layout.shape[0], 0))
    return validate_sample_weight(sample_weight, stand_in, layout.axes)


def _host_error(layout, w_host, names):
    """The CPU path's error for statistics that are not finite: computed on a
    host copy (only on this failure path), so the messages are identical."""

    def raise_it():
        x3 = layout.x3.copy_to_host()
        _moments.moments(Layout(x3, (1,)), w_host, names)

    return raise_it


def _affine_params(est, n_features, reset):
    """``gamma_`` and ``beta_`` as the fit will set them (see _update)."""
    if not reset:
        return est.gamma_, est.beta_
    gamma = feature_vector(est.gamma, n_features, "gamma")
    beta = feature_vector(est.beta, n_features, "beta")
    return (
        gamma if est.scale else np.ones(n_features),
        beta if est.center else np.zeros(n_features),
    )


def batch_moments(est, X, sample_weight, *, reset, normalize=False):
    """Validate a batch and compute its moments on the GPU (for ``_update``).

    With ``normalize``, the batch is also normalized by its own statistics in
    the same sequence of kernels (the fused training-mode forward) and the
    result is kept in ``layout.normalized``.

    Returns
    -------
    X : CudaLayout
        Stands in for the validated array (it has ``shape`` and ``ndim``).
    axes : tuple of int
    n_features : int
    layout : CudaLayout
    batch : Moments
    """
    layout, n_features = validate(est, X, reset=reset)
    names = getattr(est, "feature_names_in_", None)
    w_host = _host_weights(sample_weight, layout)
    w, w_host = layout.device_weights(w_host)
    error = _host_error(layout, w_host, names)
    backend = layout.backend
    kernels = _kernels()
    if normalize:
        gamma, beta = _affine_params(est, n_features, reset)
        view, obj = layout.empty_out()
        res = kernels.forward(
            layout.x3,
            w,
            gamma,
            beta,
            float(est.eps),
            view,
            error,
            **backend.launch_options(),
        )
        layout.normalized = layout.restore(view, obj)
    else:
        res = kernels.moments(layout.x3, w, error, **backend.launch_options())
    return layout, layout.axes, n_features, layout, _moments.Moments(*res)


def prepare(est, X, copy):
    """Validate input of ``transform`` or ``inverse_transform`` on the GPU.

    Returns
    -------
    layout : CudaLayout
    out : device array or None
        ``layout.x3`` when the output may overwrite the input.
    """
    layout, _ = validate(est, X, reset=False)
    return layout, (layout.x3 if not copy and layout.in_place else None)


def affine(layout, shift, scale, offset, out=None, feature_names=None):
    """``(x - shift) * scale + offset`` per feature on the GPU.

    The CUDA counterpart of :func:`skbn._moments.affine`.

    Parameters
    ----------
    layout : CudaLayout
    shift, scale, offset : ndarray of shape (n_features,), float64
    out : device array or None
        ``layout.x3`` to write in place (see :func:`prepare`).
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
        _moments._raise_inf(layout.x3.copy_to_host(), feature_names)

    _kernels().affine(
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


def batch_norm_backward(x, dy, mean, inv_std, gamma=None, *, axis=-1, training=True):
    """Batch norm backward of GPU arrays (one batch; no renorm, no ghost batches).

    The CUDA counterpart of the batch loop in
    :func:`skbn.functional.batch_norm_backward`, for a caller that kept the
    forward statistics.

    Parameters
    ----------
    x, dy : CUDA arrays of the same shape
        The forward input and the gradient of its output.
    mean, inv_std : ndarray of shape (n_features,), float64
        The statistics the forward pass normalized with
        (``inv_std = 1 / sqrt(var + eps)``).
    gamma : ndarray of shape (n_features,), optional
        The forward scale (ones when None).
    axis : int or tuple of int
        The feature axes.
    training : bool
        True when the forward pass used the batch's own statistics.

    Returns
    -------
    dx : object of ``x``'s kind, shape and float dtype
    dgamma, dbeta : ndarray of shape (n_features,), float64, on the host
    """
    if not (is_cuda(x) and is_cuda(dy)):
        raise ValueError("x and dy must both be CUDA arrays.")
    if (reason := unavailable_reason()) is not None:
        raise ValueError(f"CUDA is not available to skbn: {reason}. {_INSTALL}.")
    ix, ig = _interface(x), _interface(dy)
    shape = tuple(int(n) for n in ix["shape"])
    if tuple(int(n) for n in ig["shape"]) != shape:
        raise ValueError(f"dy has shape {tuple(ig['shape'])}, but x has {shape}.")
    axes = normalize_axis(axis, len(shape))
    backend = _Backend(x, gpu=True)
    x3, perm, _ = _device_x3(backend, x, ix, axes)
    g3, _, _ = _device_x3(backend, dy, ig, axes)
    layout = CudaLayout(backend, x3, shape, axes, perm, None, False)
    d = x3.shape[1]
    gamma = np.ones(d) if gamma is None else np.asarray(gamma, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    inv_std = np.asarray(inv_std, dtype=np.float64)
    view, obj = layout.empty_out()
    s, q = _kernels().backward(
        x3, g3, mean, inv_std, gamma, bool(training), view, **backend.launch_options()
    )
    return layout.restore(view, obj), inv_std * q, s
