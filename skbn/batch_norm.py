"""``BatchNormalizer``: batch normalization as a scikit-learn transformer."""

from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin

from . import _monitor, _params
from ._atomic import AtomicMixin
from ._backends.numpy import WRITE_BY_BATCH, WRITE_BY_RUNNING, WRITE_NOTHING
from ._docstrings import shared_docs
from ._fitted import FITTED_VECTORS
from ._interop import InteropMixin
from ._running import RunningStatsMixin
from ._sklearn_compat import wrap_data_with_container
from ._state import StateMixin
from ._validation import SpecMixin

TransformOutput: TypeAlias = Any
"""What ``transform`` and its kin return: the input's kind of array.

A NumPy ``ndarray`` for NumPy or other array-like input; a lazy
``dask.array.Array`` for dask input; a pandas or polars DataFrame when
``set_output`` asks for one.  ``BatchNormalizer`` also returns SciPy sparse
output, of the input's format, for sparse input (``with_mean=False``), and
a GPU array of the input's kind for input with
``__cuda_array_interface__``.  Typed ``Any``: the kind follows the input,
which one static type cannot say.
"""


@shared_docs
class BatchNormalizer(
    AtomicMixin,
    SpecMixin,
    RunningStatsMixin,
    StateMixin,
    InteropMixin,
    OneToOneFeatureMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Batch normalization with momentum running statistics.

    In training mode (:meth:`partial_fit_transform`) a batch is normalized by
    its own mean and variance; in inference mode (:meth:`transform`) by the
    running statistics accumulated over the batches seen::

        y = gamma * (x - mean) / sqrt(var + eps) + beta

    Statistics are mergeable moments accumulated in float64 in one pass over
    memory (two-pass within cache-resident blocks, merged with the update of
    Chan, Golub and LeVeque), so float32 data far from zero gets a variance
    exact to float64 rounding, and the result is bit-identical for any number
    of threads.  The variance is the biased (population) one, as in Keras,
    Flax and :class:`~sklearn.preprocessing.StandardScaler`.

    Parameters
    ----------
    momentum : float in [0, 1] or None, default=0.9
        Weight of the *old* running value in
        ``running = momentum * running + (1 - momentum) * batch``, the
        convention of Keras (0.99) and Flax.  PyTorch's ``momentum`` is the
        weight of the *new* batch: PyTorch's 0.1 is skbn's 0.9.  ``None`` pools
        every sample seen exactly (the statistics of the concatenation of all
        batches, the same numbers as ``StandardScaler.partial_fit``), which is
        what "precise BN" population statistics want; PyTorch's
        ``momentum=None`` instead averages batch statistics with equal weight.
    ema : {"batch", "mixture"}, default="batch"
        How a batch is folded into the running statistics.  ``"batch"`` is
        batch norm's update (PyTorch, Keras, Flax): the running mean and the
        running variance each average the batch's own mean and variance.  It
        forgets how far the batch *mean* moved, so batches of one row (every
        batch variance 0) leave ``running_var_`` at 0, and batches of a few
        rows underestimate the variance of the stream.  ``"mixture"`` keeps
        the statistics of the mixture of the running distribution (weight
        ``momentum``) and the batch (weight ``1 - momentum``)::

            mean = momentum * mean + (1 - momentum) * mean_b
            var  = momentum * var + (1 - momentum) * var_b
                   + momentum * (1 - momentum) * (mean_b - mean)**2

        right at any batch size; for one-row batches it is the exponentially
        weighted variance of river's ``EWVar`` and ``AdaptiveStandardScaler``
        (their ``fading_factor`` is ``1 - momentum``).  With ``momentum=None``
        (exact pooling) ``ema`` changes nothing.
    {{eps}}
    axis : int or tuple of int, default=-1
        Feature axis or axes: each index along them keeps its own statistics,
        all other axes are reduced.  ``-1`` is per column of 2-D
        ``(n_samples, n_features)`` data and per channel of channels-last
        images; ``axis=1`` on ``(N, C, H, W)`` is PyTorch's ``BatchNorm2d``.
        Statistics are stored flat, ``(n_features,)``, in C order of the
        feature axes.
    with_mean : bool, default=True
        Subtract the mean (``StandardScaler``'s parameter): with
        ``with_mean=False`` the normalize step is
        ``gamma * x / sqrt(var + eps) + beta``.  The mean is still computed
        and kept in ``running_mean_`` (``StandardScaler`` keeps ``mean_ =
        None`` instead).  Must be False for scipy.sparse input (see Notes).
    with_std : bool, default=True
        Divide by ``sqrt(var + eps)`` (``StandardScaler``'s parameter): with
        ``with_std=False`` the step is ``gamma * (x - mean) + beta``.  The
        variance is still computed and kept in ``running_var_``
        (``StandardScaler`` keeps ``var_ = None`` instead).
    center : bool, default=True
        Add ``beta``.  With ``center=False`` (Keras' name) ``beta_`` is zero.
    scale : bool, default=True
        Multiply by ``gamma``.  With ``scale=False`` ``gamma_`` is one.
    gamma : float or array-like of shape (n_features,), default=1.0
        Initial scale; copied into ``gamma_`` by :meth:`fit`.
    beta : float or array-like of shape (n_features,), default=0.0
        Initial shift; copied into ``beta_`` by :meth:`fit`.
    copy : bool, default=True
        If False, :meth:`transform` and :meth:`inverse_transform` overwrite
        their input when it is a writable float32 or float64 ndarray of a
        layout the kernels read directly (any permutation of a contiguous
        array whose feature axes lie side by side in memory: C, Fortran,
        channels-last); float16 input always gets a new array.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the work runs.  ``"auto"`` follows the data: a CUDA array (a
        Numba device array, a CuPy array, a PyTorch CUDA tensor: anything with
        ``__cuda_array_interface__``) runs on its GPU and the result is of the
        same kind; anything else runs on the CPU.  ``"cuda"`` also takes host
        data, copies it to the GPU and returns NumPy.  ``"cpu"`` refuses GPU
        data.  The running statistics stay NumPy arrays on the host either
        way.  The GPU path needs the ``cuda`` extra (``pip install
        'skbn[cuda]'``); ``"cuda"`` raises ``ValueError`` where it cannot run.
        ``renorm`` and ``virtual_batch_size`` are CPU-only.
    track_batch_stats : bool, default=False
        Keep each batch's own mean and variance, and the running statistics
        after it, in :attr:`batch_stats_` (for drift monitoring, see
        :func:`skbn.plotting.plot_batch_stats`).
    max_batch_stats : int >= 1, default=1000
        With ``track_batch_stats``, how many of the latest batches are kept
        (a ring buffer: memory stays bounded on an endless stream).
    renorm : (r_max, d_max) or None, default=None
        Batch Renormalization (Ioffe 2017) in :meth:`partial_fit_transform`:
        the batch is normalized as ``(x - mean_B) / sigma_B * r + d`` with
        ``r`` and ``d`` clipped to ``[1/r_max, r_max]`` and
        ``[-d_max, d_max]`` and computed from the running statistics before
        the batch (see :func:`skbn.functional.batch_norm_forward`).
    virtual_batch_size : int >= 1 or None, default=None
        Ghost batch norm in :meth:`partial_fit_transform`: each group of this
        many consecutive samples is normalized by its own statistics (it must
        divide the batch size).  The running statistics are those of the
        whole batch.

    Attributes
    ----------
    running_mean_ : ndarray of shape (n_features,)
        Running mean (float64).  A feature with no observed value yet (all
        NaN) has mean 0 and variance 1, PyTorch's initial values.
    running_var_ : ndarray of shape (n_features,)
        Running biased variance (float64).
    gamma_ : ndarray of shape (n_features,)
        Scale applied after normalizing; a training loop may update it.
    beta_ : ndarray of shape (n_features,)
        Shift applied after normalizing; a training loop may update it.
    n_samples_seen_ : int, float or ndarray of shape (n_features,)
        Number of samples (rows, entries along axis 0) seen since the last
        :meth:`fit`, counted as :class:`~sklearn.preprocessing.StandardScaler`
        counts them: per feature, NaN values are not counted, and with
        ``sample_weight`` the weights are summed.  One number (an ``int``
        when whole) when every feature has the same count, otherwise an array
        per feature.  For N-D data a sample counts by the share of its values
        of the feature that are not NaN.
    n_batches_seen_ : int
        Number of batches seen since the last :meth:`fit` (``fit`` counts one).
    n_features_in_ : int
        Number of features (indices along ``axis``).
    {{feature_names_in_}}
    batch_stats_ : BatchStats
        Only with ``track_batch_stats=True``: arrays ``batch``, ``n_samples``,
        ``mean``, ``var``, ``running_mean`` and ``running_var`` of the last
        ``max_batch_stats`` batches, oldest first (see
        :class:`skbn._monitor.BatchStats`).

    See Also
    --------
    sklearn.preprocessing.StandardScaler : Exact statistics, no momentum.

    Notes
    -----
    A ``dask.array.Array`` is accepted by :meth:`fit`, :meth:`partial_fit`,
    :meth:`partial_fit_transform` and :meth:`transform`: the statistics are
    computed block by block and merged as moments (exact to float64 rounding;
    computed when the method is called), and the normalized output is a lazy
    dask array.  :meth:`save` and :meth:`load` keep the state in a file
    without pickle; :meth:`to_torch_state_dict`, :meth:`from_torch`,
    :meth:`to_keras_weights` and :meth:`from_keras_weights` convert to and from
    PyTorch and Keras batch norm.

    scipy.sparse input (CSR or CSC, matrices or arrays; other formats are
    converted to CSR) is accepted by every method when ``with_mean=False``,
    as by ``StandardScaler``: subtracting the mean would turn every implicit
    zero into a stored value.  The statistics count implicit zeros as values
    of 0 and ignore stored NaN; the output is of the input's sparse format
    and class, never densified: each stored value is multiplied by its
    feature's ``gamma_ / sqrt(running_var_ + eps)``, so ``beta_`` must be 0
    (``center=False`` or ``beta=0``).  ``axis`` must be the column axis
    (``-1`` or ``1``); ``renorm``, ``virtual_batch_size`` and
    ``device="cuda"`` take dense input only.  With ``copy=False``,
    :meth:`transform` scales the stored values of a float CSR/CSC input in
    canonical format in place.

    **dtype and memory layout.** float16, float32 and float64 input give
    output of the same dtype (anything else becomes float64); the statistics
    are accumulated and kept in float64 whatever the input.  float16 is read
    as float64 (exactly) and each output value is rounded once, from float64,
    to float16, so it equals the float64 computation on
    ``X.astype(np.float64)`` cast with ``astype(np.float16)``.  A normalized
    value beyond the output dtype's range (65504 for float16, about 3.4e38
    for float32) becomes ``inf``, as NumPy's casts make it, without a
    warning.  The GPU path refuses float16 with ``TypeError``.  The output of
    every method keeps the input's memory order, as ``np.empty_like(X)``
    does (NumPy's ``order="K"``, PyTorch's ``memory_format``): a
    Fortran-ordered or channels-last input gives a Fortran-ordered or
    channels-last output, computed on the input's own memory where its
    feature axes lie side by side in it.  The normalize step is element-wise,
    so :meth:`transform` gives the same bits in every layout; in training
    mode the statistics of a Fortran-ordered input with one feature axis are
    summed in its memory order, equal to those of C order up to rounding.

    NaN values are ignored when fitting and stay NaN in :meth:`transform`;
    infinite values raise ``ValueError`` naming the feature.  A constant
    feature (variance 0) transforms to exactly ``beta``.  A call that raises
    leaves the estimator as it was.

    Examples
    --------
    >>> import numpy as np
    >>> from skbn import BatchNormalizer
    >>> rng = np.random.default_rng(0)
    >>> bn = BatchNormalizer(momentum=0.9)
    >>> for _ in range(20):
    ...     batch = rng.normal(5.0, 2.0, size=(64, 3)).astype(np.float32)
    ...     y = bn.partial_fit_transform(batch)
    >>> bn.n_batches_seen_
    20
    >>> np.round(bn.running_mean_, 0)
    array([5., 5., 5.])
    >>> bn.transform(batch).dtype
    dtype('float32')

    Sparse input stays sparse, scaled per column (``with_mean=False``):

    >>> import scipy.sparse as sp
    >>> Xs = sp.csr_matrix(np.array([[0.0, 2.0], [0.0, 0.0], [4.0, 2.0]]))
    >>> Xt = BatchNormalizer(with_mean=False, eps=1e-12).fit_transform(Xs)
    >>> type(Xt).__name__, Xt.nnz
    ('csr_matrix', 3)
    >>> np.round(Xt.toarray(), 3)
    array([[0.   , 2.121],
           [0.   , 0.   ],
           [2.121, 2.121]])
    """

    # Fitted attributes (annotations only: they exist once fitted).
    running_mean_: np.ndarray
    running_var_: np.ndarray
    _seen: np.ndarray
    n_samples_seen_: int
    n_batches_seen_: int

    _parameter_constraints: dict[str, list[Any]] = _params.BATCH_NORM
    # Fitted state that save/load keep besides the public attributes.
    _state_private = ("_axes", "_fit_axis", "_ndim", "_seen", "_batch_stats")
    _state_vectors = FITTED_VECTORS

    def __init__(
        self,
        *,
        momentum: float | None = 0.9,
        ema: str = "batch",
        eps: float = 1e-5,
        axis: int | tuple[int, ...] = -1,
        with_mean: bool = True,
        with_std: bool = True,
        center: bool = True,
        scale: bool = True,
        gamma: float | ArrayLike = 1.0,
        beta: float | ArrayLike = 0.0,
        copy: bool = True,
        device: str = "auto",
        track_batch_stats: bool = False,
        max_batch_stats: int = 1000,
        renorm: tuple[float, float] | None = None,
        virtual_batch_size: int | None = None,
    ) -> None:
        self.momentum = momentum
        self.ema = ema
        self.eps = eps
        self.axis = axis
        self.with_mean = with_mean
        self.with_std = with_std
        self.center = center
        self.scale = scale
        self.gamma = gamma
        self.beta = beta
        self.copy = copy
        self.device = device
        self.track_batch_stats = track_batch_stats
        self.max_batch_stats = max_batch_stats
        self.renorm = renorm
        self.virtual_batch_size = virtual_batch_size

    def fit(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> "BatchNormalizer":
        """Forget all statistics, then take the exact statistics of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Training data.  NaN values are ignored.
        {{y_and_sample_weight}}

        Returns
        -------
        self : BatchNormalizer
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> bn = BatchNormalizer().fit(X)
        >>> bn.running_mean_, bn.running_var_
        (array([ 2., 20.]), array([  1., 100.]))
        """
        self._reset()
        return self.partial_fit(X, y, sample_weight=sample_weight)

    def fit_transform(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> TransformOutput:
        """Fit to ``X``, then normalize it with the statistics just fitted.

        The same result as ``fit(X).transform(X)``, with the input checked
        and laid out once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Training data.  NaN values are ignored when fitting.
        {{y_and_sample_weight}}

        Returns
        -------
        X_out : ndarray of the shape, float dtype and memory order of ``X``
            Normalized data, in the container chosen with ``set_output``.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> np.round(BatchNormalizer().fit_transform(X), 3)
        array([[-1., -1.],
               [ 1.,  1.]])
        """
        self._reset()
        return self._train(X, sample_weight, WRITE_BY_RUNNING)

    def partial_fit(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> "BatchNormalizer":
        """Update the running statistics with one mini-batch.

        The first batch initializes them (no zero-initialization bias); later
        batches update them with ``momentum`` (see the class docstring).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            One mini-batch.  NaN values are ignored.
        {{y_and_sample_weight}}

        Returns
        -------
        self : BatchNormalizer
            The updated estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.9)
        >>> bn = bn.partial_fit(np.full((4, 2), 1.0))  # the first batch sets them
        >>> bn = bn.partial_fit(np.full((4, 2), 21.0))
        >>> bn.running_mean_  # 0.9 * 1 + 0.1 * 21
        array([3., 3.])
        >>> bn.n_batches_seen_, bn.n_samples_seen_
        (2, 8)
        """
        self._train(X, sample_weight, WRITE_NOTHING)
        return self

    def partial_fit_transform(
        self, X: ArrayLike, y: object = None, sample_weight: ArrayLike | None = None
    ) -> TransformOutput:
        """Training mode: update the running statistics and normalize the batch.

        The batch is normalized by its own (weighted) mean and variance, as a
        batch-norm layer does while training; the running statistics are
        updated as :meth:`partial_fit` does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            One mini-batch.
        {{y_and_sample_weight}}

        Returns
        -------
        X_out : ndarray of the shape, float dtype and memory order of ``X``
            The batch normalized by its own statistics, in the container
            chosen with ``set_output``.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.9)
        >>> np.round(bn.partial_fit_transform(np.array([[0.0], [2.0]])), 3)
        array([[-1.],
               [ 1.]])
        >>> np.round(bn.partial_fit_transform(np.array([[10.0], [12.0]])), 3)
        array([[-1.],
               [ 1.]])
        >>> bn.running_mean_  # 0.9 * 1 + 0.1 * 11
        array([2.])
        """
        y_out = self._train(X, sample_weight, WRITE_BY_BATCH)
        return wrap_data_with_container("transform", y_out, X, self)

    def transform(self, X: ArrayLike, copy: bool | None = None) -> TransformOutput:
        """Normalize ``X`` with the running statistics (inference mode).

        ``gamma_ * (X - running_mean_) / sqrt(running_var_ + eps) + beta_``,
        applied as one scale-and-shift pass.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Data to normalize.  NaN stays NaN.
        copy : bool, default=None
            Overrides the ``copy`` parameter for this call.

        Returns
        -------
        X_out : ndarray of the shape, float dtype and memory order of ``X``
            Normalized data (a lazy dask array for dask input).

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer().fit(np.array([[0.0], [2.0]]))  # mean 1, var 1
        >>> np.round(bn.transform(np.array([[1.0], [3.0]])), 3)
        array([[0.],
               [2.]])
        """
        return self._apply(X, copy, inverse=False)

    def inverse_transform(
        self, X: ArrayLike, copy: bool | None = None
    ) -> TransformOutput:
        """Undo :meth:`transform` (up to rounding).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or N-D
            Normalized data.
        copy : bool, default=None
            Overrides the ``copy`` parameter for this call.

        Returns
        -------
        X_original : ndarray of the shape, float dtype and memory order of ``X``
            Data in the original units.

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
        >>> bn = BatchNormalizer()
        >>> Z = bn.fit_transform(X)
        >>> bn.inverse_transform(Z)
        array([[ 1., 10.],
               [ 3., 30.]])
        """
        return self._apply(X, copy, inverse=True)

    @property
    def batch_stats_(self) -> Any:
        """Statistics of the latest batches (``track_batch_stats=True``).

        Examples
        --------
        >>> import numpy as np
        >>> from skbn import BatchNormalizer
        >>> bn = BatchNormalizer(momentum=0.5, track_batch_stats=True)
        >>> for shift in (0.0, 2.0, 4.0):
        ...     bn = bn.partial_fit(np.array([[shift], [shift + 2.0]]))
        >>> bn.batch_stats_.mean.ravel()
        array([1., 3., 5.])
        >>> bn.batch_stats_.running_mean.ravel()
        array([1. , 2. , 3.5])
        """
        if not hasattr(self, "_batch_stats"):
            raise AttributeError(
                "batch_stats_ is kept only with track_batch_stats=True, from the "
                "first batch fitted with it on."
            )
        history = self._batch_stats[-self.max_batch_stats :]
        return _monitor.stack(history, self.n_features_in_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        # scipy.sparse input is accepted where it stays sparse: without
        # centering (with the default with_mean=True it raises, saying so),
        # as StandardScaler's tag says.
        tags.input_tags.sparse = not self.with_mean
        tags.transformer_tags.preserves_dtype = ["float64", "float32", "float16"]
        return tags
