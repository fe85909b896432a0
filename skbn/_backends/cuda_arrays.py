"""GPU arrays as the CUDA kernels see them, whatever library made them.

An object that exposes ``__cuda_array_interface__`` (a Numba device array, a
CuPy array, a PyTorch CUDA tensor) is wrapped as a Numba device array without
a copy (:class:`DeviceArrays`), laid out as the kernels' C-contiguous 3-D
view ``(outer, features, inner)`` (:class:`CudaLayout`, the GPU counterpart
of :class:`skbn._core.views.Layout`), and results come back as the same kind
of object.  Outputs and scratch buffers of a PyTorch or CuPy input are
allocated by that library (its caching allocator, its current stream and
device); the kernels run on that library's current stream, so the result is
ordered with the user's other work without a device-wide synchronization.

A C-contiguous float32 or float64 input whose feature axes form one block is
used in place; anything else (strided, Fortran-ordered, integer, a
non-adjacent set of feature axes) is first gathered into a contiguous float
array on the GPU by one kernel, and the output is always C-contiguous.

Nothing here imports ``numba.cuda``, torch or CuPy at module level, and the
checks for GPU data only look at attributes: ``import skbn`` never
initializes CUDA, and NumPy users never pay for it.

Under ``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator, used by the tests on
machines without a GPU) device memory is host memory: a simulated device array
or any object whose ``__cuda_array_interface__`` points at host memory is
accepted and the same kernels run in the simulator.
"""

import sys
from functools import cache
from math import prod

import numpy as np

from .._validation import FLOAT_TYPES

INSTALL = (
    "Install the CUDA extra (pip install 'skbn[cuda]', or '.[cuda]' in a "
    "checkout of skbn) on a machine with an NVIDIA GPU and driver"
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
        from .._kernels import cuda as _  # noqa: F401
    except Exception as exc:
        return f"skbn's CUDA kernels cannot be imported ({exc})"
    return None


def check_device(device):
    """Raise ``ValueError`` when ``device="cuda"`` cannot run here."""
    if device == "cuda" and (reason := unavailable_reason()) is not None:
        raise ValueError(
            f"device='cuda' is not available: {reason}. {INSTALL}, or use "
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
            f"to skbn: {reason}. {INSTALL}, or copy X to host memory."
        )
    return gpu


# -- the CUDA modules, imported on first use ----------------------------------------


def cuda_module():
    from numba import cuda

    return cuda


def kernels():
    from .._kernels import cuda as kernels

    return kernels


def simulated():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


# -- foreign arrays ------------------------------------------------------------------


def interface(X):
    """The CUDA array interface of ``X`` (the simulator's arrays: its host
    array's interface, whose pointer is as good as a device pointer there)."""
    iface = getattr(X, "__cuda_array_interface__", None)
    if iface is None:
        iface = X._ary.__array_interface__
    return iface


def c_strides(shape, itemsize):
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


def wrap(iface, owner, sync):
    """A Numba device array over the memory that ``iface`` describes."""
    if simulated():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        desc = dict(iface, version=3)
        desc.pop("stream", None)
        return FakeCUDAArray(np.asarray(_Described(desc, owner)))
    return cuda_module().as_cuda_array(_Described(iface, owner), sync=sync)


class DeviceArrays:
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
        if simulated():
            self.key = ("simulator",)
        elif self.kind == "torch":
            ptr = sys.modules["torch"].cuda.current_stream(X.device).cuda_stream
            self.stream = cuda_module().external_stream(ptr) if ptr else 0
            self.key = ("torch", X.device.index)
        elif self.kind == "cupy":
            ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
            self.stream = cuda_module().external_stream(ptr) if ptr else 0
            self.key = ("cupy", X.device.id)
        else:
            # Numba allocates in its current context.
            self.key = ("numba", cuda_module().get_current_device().id)

    def view(self, X):
        """A Numba device array over ``X``'s memory (no copy).

        With PyTorch and CuPy the kernels run on the library's current
        stream, which orders them after the work that produced ``X``: no need
        to synchronize on the stream named in the interface.
        """
        if getattr(X, "__cuda_ndarray__", False) is True:
            return X
        return wrap(interface(X), X, sync=self.kind not in ("torch", "cupy"))

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
        arr = cuda_module().device_array(shape, dtype=dtype, stream=self.stream)
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

    The CUDA counterpart of :class:`skbn._core.views.Layout`, made by
    :func:`skbn._backends.cuda.validate`.

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
        strides = c_strides(moved, 1)
        src = [strides[self.perm.index(a)] for a in range(self.ndim)]
        kernels().gather_into(
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
        dev = cuda_module().to_device(host, stream=self.backend.stream)
        return dev, host


def device_view(backend, X, iface, axes):
    """The 3-D kernel view of GPU input ``X``: in place, or gathered."""
    shape = tuple(int(n) for n in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    lo, hi = axes[0], axes[-1]
    contiguous_block = hi - lo + 1 == len(axes)
    strides = iface.get("strides")
    c_order = strides is None or all(
        s == c or n == 1
        for s, c, n in zip(
            strides, c_strides(shape, dtype.itemsize), shape, strict=True
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
    strides = iface.get("strides") or c_strides(shape, itemsize)
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
    src = wrap(span, X, sync=backend.kind not in ("torch", "cupy"))
    out_dtype = dtype if dtype.type in FLOAT_TYPES else np.dtype(np.float64)
    out = backend.alloc((prod(moved),), out_dtype)
    kernels().gather_into(
        src,
        -low // itemsize,
        [strides[a] // itemsize for a in order],
        moved,
        out,
        stream=backend.stream,
    )
    return out
