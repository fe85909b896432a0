"""Where a call runs: NumPy on the CPU, CUDA, Dask, or scipy.sparse on the
CPU, chosen once per call.

:func:`for_input` looks at the input (and the ``device`` parameter) and
returns one of four backends.  They offer the same operations on a
validated batch (``validate``, ``moments``, ``train_forward``,
``normalize``, ...), take plain arrays and a :class:`~skbn._validation.Spec`
(never an estimator), and compute with the same routines of
:mod:`skbn._core`: the NumPy backend on the array, the Dask backend on each
block (merged as moments), the CUDA backend with the kernels of
:mod:`skbn._kernels.cuda`, which implement the same formulas.
"""

import numpy as np

from . import cuda, dask, sparse
from . import numpy as host
from .cuda import check_device

__all__ = ["check_device", "for_input"]


def for_input(X, device="auto"):
    """The backend that runs a call on ``X``.

    Parameters
    ----------
    X : object
        The call's input.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` follows the data, ``"cuda"`` also moves host data to the
        GPU, ``"cpu"`` refuses GPU data.

    Returns
    -------
    module
        :mod:`skbn._backends.numpy`, :mod:`~skbn._backends.cuda`,
        :mod:`~skbn._backends.dask` or :mod:`~skbn._backends.sparse`
        (scipy.sparse input).

    Raises
    ------
    ValueError
        GPU data with ``device="cpu"``, CUDA requested where it cannot run
        or for sparse input.
    """
    if type(X) is np.ndarray and device != "cuda":
        return host  # the common case, first: a streaming loop calls this often
    if sparse.is_sparse(X):
        sparse.refuse_device(device)
        return sparse
    if dask.is_dask(X):
        return dask
    if cuda.on_cuda(device, X):
        return cuda
    return host
