"""scipy.sparse input: statistics by the CSR/CSC kernels, output that stays
sparse, checked against StandardScaler(with_mean=False), the dense path on
``toarray()`` and ``naive.sparse_moments``."""

import pickle

import naive
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.preprocessing import StandardScaler

from skbn import BatchNormalizer, _config
from skbn._backends import for_input

sp = pytest.importorskip("scipy.sparse")

CONTAINERS = [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array]
OTHER_FORMATS = ["coo", "lil", "dok", "bsr", "dia"]
EPS = 1e-300  # StandardScaler divides by the standard deviation alone


def _bn(**kw):
    return BatchNormalizer(**{"with_mean": False, "momentum": None, **kw})


def _random(rng, shape=(200, 7), density=0.2, nan=0.0, dtype=np.float64):
    X = sp.random(
        *shape, density=density, format="csr", random_state=rng, dtype=np.float64
    )
    X.data = rng.normal(3.0, 2.0, size=X.nnz)
    if nan:
        X.data[rng.random(X.nnz) < nan] = np.nan
    return X.astype(dtype)


def _dense_equal(a, b, **kw):
    assert_allclose(a.toarray(), b.toarray() if sp.issparse(b) else b, **kw)


def _same_sparse(a, b):
    """Bit for bit the same matrix object contents."""
    assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
    assert_array_equal(a.indptr, b.indptr)
    assert_array_equal(a.indices, b.indices)
    assert a.data.tobytes() == b.data.tobytes()


# -- against StandardScaler(with_mean=False) ------------------------------------


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("nan", [0.0, 0.1], ids=["finite", "nan"])
def test_matches_standard_scaler(rng, container, nan):
    X = container(_random(rng, nan=nan))
    ss = StandardScaler(with_mean=False).fit(X)
    bn = _bn(eps=EPS).fit(X)
    assert_allclose(bn.running_mean_, ss.mean_, rtol=1e-13)
    assert_allclose(bn.running_var_, ss.var_, rtol=1e-12)
    y = bn.transform(X)
    assert type(y) is type(X) and y.dtype == X.dtype
    _dense_equal(y, ss.transform(X), rtol=1e-12, equal_nan=True)
    y = bn.fit_transform(X)
    assert type(y) is type(X)
    _dense_equal(y, ss.transform(X), rtol=1e-12, equal_nan=True)
    back = bn.inverse_transform(y)
    assert type(back) is type(X)
    _dense_equal(back, X, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("container", CONTAINERS)
def test_weighted_matches_standard_scaler(rng, container):
    X = container(_random(rng, nan=0.05))
    w = rng.uniform(0.0, 3.0, size=X.shape[0])
    ss = StandardScaler(with_mean=False).fit(X, sample_weight=w)
    bn = _bn(eps=EPS).fit(X, sample_weight=w)
    assert_allclose(bn.running_mean_, ss.mean_, rtol=1e-12)
    assert_allclose(bn.running_var_, ss.var_, rtol=1e-12)


@pytest.mark.parametrize("container", CONTAINERS)
def test_partial_fit_over_batches_matches_standard_scaler(rng, container):
    X = _random(rng, shape=(300, 5), nan=0.05)
    ss = StandardScaler(with_mean=False)
    bn = _bn(eps=EPS)
    for i in range(0, 300, 70):
        ss.partial_fit(container(X[i : i + 70]))
        bn.partial_fit(container(X[i : i + 70]))
    assert_allclose(bn.running_mean_, ss.mean_, rtol=1e-12)
    assert_allclose(bn.running_var_, ss.var_, rtol=1e-12)
    # Stored NaN are not counted: per feature, as StandardScaler counts.
    assert_array_equal(bn.n_samples_seen_, ss.n_samples_seen_)
    assert bn.n_batches_seen_ == 5


# -- against the dense path and the naive reference -----------------------------


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_dense_path(rng, blocks, container, weighted):
    X = container(_random(rng, shape=(500, 9), density=0.3, nan=0.05))
    w = rng.uniform(0.0, 2.0, size=500) if weighted else None
    dense = _bn().fit(X.toarray(), sample_weight=w)
    bn = _bn().fit(X, sample_weight=w)
    assert_allclose(bn.running_mean_, dense.running_mean_, rtol=1e-12)
    assert_allclose(bn.running_var_, dense.running_var_, rtol=1e-12)
    assert_allclose(bn._seen, dense._seen, rtol=1e-14)
    _dense_equal(bn.transform(X), dense.transform(X.toarray()), rtol=1e-12)


def _naive_check(X, w=None):
    count, mean, var, _ = naive.sparse_moments(X, w)
    bn = _bn().fit(X, sample_weight=w)
    assert_allclose(bn._seen, count, rtol=1e-13, atol=1e-300)
    assert_allclose(bn.running_mean_, mean, rtol=1e-11, atol=1e-14)
    assert_allclose(
        bn.running_var_, np.where(count > 0, var, 1.0), rtol=1e-10, atol=1e-14
    )


@st.composite
def sparse_cases(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 12))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]))
    nan = draw(st.sampled_from([0.0, 0.2]))
    fmt = draw(st.sampled_from(["csr", "csc"]))
    key = draw(st.integers(0, 2**32 - 1))
    weighted = draw(st.booleans())
    offset = draw(st.sampled_from([0.0, 1e6]))
    return n, d, density, nan, fmt, key, weighted, offset


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=sparse_cases())
def test_kernels_match_naive(tiny_blocks, case):
    n, d, density, nan, fmt, key, weighted, offset = case
    gen = np.random.default_rng(key)
    X = sp.random(n, d, density=density, format=fmt, random_state=gen)
    X.data = offset + gen.normal(size=X.nnz)
    if nan:
        X.data[gen.random(X.nnz) < nan] = np.nan
    w = gen.uniform(0.0, 3.0, size=n) if weighted else None
    if w is not None and not w.sum() > 0:
        w[0] = 1.0
    _naive_check(X, w)


def test_integer_weights_are_repeated_rows(rng):
    X = _random(rng, shape=(30, 4), density=0.4, nan=0.1)
    w = rng.integers(0, 4, size=30)
    w[0] = 1
    repeated = sp.csr_matrix(X.toarray().repeat(w, axis=0))
    a = _bn().fit(X, sample_weight=w)
    b = _bn().fit(repeated)
    assert_allclose(a.running_mean_, b.running_mean_, rtol=1e-13)
    assert_allclose(a.running_var_, b.running_var_, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_bits_do_not_depend_on_the_thread_count(rng, tiny_blocks, restore_threads, fmt):
    X = _random(rng, shape=(400, 6), density=0.3, nan=0.05).asformat(fmt)
    w = rng.uniform(0.5, 2.0, size=400)
    results = []
    for threads in sorted({1, restore_threads}):
        numba.set_num_threads(threads)
        bn = _bn().fit(X, sample_weight=w)
        results.append((bn.running_mean_.tobytes(), bn.running_var_.tobytes()))
    assert all(r == results[0] for r in results)


def test_wide_csr_is_reduced_as_csc(rng, monkeypatch):
    X = _random(rng, shape=(300, 40), density=0.2, nan=0.05)
    want = _bn().fit(X)
    # Tables for fewer than two tasks: the kernel per column runs instead.
    monkeypatch.setattr(_config, "MIN_TASK_ELEMENTS", 1)
    monkeypatch.setattr(_config, "SPARSE_TABLE_BYTES", 8)
    got = _bn().fit(X)
    assert_allclose(got.running_mean_, want.running_mean_, rtol=1e-13)
    assert_allclose(got.running_var_, want.running_var_, rtol=1e-12)


def test_far_from_zero_is_exact(rng):
    # Stored values near 1e8 and zeros: the shifted passes keep the variance.
    X = sp.random(1000, 3, density=0.5, format="csc", random_state=rng)
    X.data = 1e8 + rng.normal(size=X.nnz)
    _naive_check(X)
    full = sp.csc_matrix(1e8 + rng.normal(size=(1000, 2)))
    _naive_check(full)


# -- containers, dtypes, shapes -------------------------------------------------


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_index_dtypes(rng, index_dtype, fmt):
    X = _random(rng, nan=0.1).asformat(fmt)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    assert X.indices.dtype == index_dtype
    bn = _bn().fit(X)
    assert_allclose(bn.running_var_, naive.sparse_moments(X)[2], rtol=1e-12)
    want = bn.transform(X.toarray())
    # A copy is as scipy's copy makes it (which may narrow the indices).
    _dense_equal(bn.transform(X), want, rtol=1e-15, equal_nan=True)
    y = bn.transform(X, copy=False)
    assert y is X and X.indices.dtype == index_dtype
    _dense_equal(y, want, rtol=1e-15, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_is_kept(rng, dtype):
    X = _random(rng, dtype=dtype)
    y = _bn().fit_transform(X)
    assert y.dtype == dtype
    y = _bn().fit(X).inverse_transform(y)
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_data_becomes_float64(rng, dtype):
    X = sp.csr_matrix(rng.integers(0, 3, size=(20, 4)).astype(dtype))
    bn = _bn().fit(X)
    y = bn.transform(X)
    assert y.dtype == np.float64 and type(y) is sp.csr_matrix
    assert_allclose(bn.running_var_, X.toarray().astype(float).var(axis=0))


@pytest.mark.parametrize("fmt", OTHER_FORMATS)
def test_other_formats_are_read_as_csr(rng, fmt):
    X = _random(rng, shape=(40, 4))
    other = X.asformat(fmt)
    before = pickle.dumps(other)
    bn = _bn().fit(other)
    assert_allclose(bn.running_var_, naive.sparse_moments(X)[2], rtol=1e-12)
    y = bn.transform(other)
    assert y.format == "csr"
    _dense_equal(y, bn.transform(X), rtol=1e-15)
    assert pickle.dumps(other) == before


def test_empty_rows_and_columns_all_zero_and_one_row():
    X = sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    bn = _bn(eps=EPS).fit(X)
    assert_array_equal(bn.running_mean_, [0.0, 2.0, 0.0])
    assert_allclose(bn.running_var_, [0.0, 8.0 / 3.0, 0.0])
    # Zero variance: the implicit zeros stay zeros, nothing is stored.
    y = _bn().fit(sp.csr_matrix((5, 3))).transform(sp.csr_matrix((5, 3)))
    assert y.nnz == 0 and y.shape == (5, 3)
    one = sp.csc_array(np.array([[0.0, 3.0, -1.0]]))
    bn = _bn().fit(one)
    assert_array_equal(bn.running_mean_, [0.0, 3.0, -1.0])
    assert_array_equal(bn.running_var_, [0.0, 0.0, 0.0])


def test_nan_stays_nan_and_all_nan_column(rng):
    X = sp.csr_matrix(np.array([[np.nan, 1.0], [np.nan, 0.0], [np.nan, 3.0]]))
    bn = _bn().fit(X)
    assert bn._seen[0] == 0 and bn.running_mean_[0] == 0 and bn.running_var_[0] == 1
    y = bn.transform(X)
    assert np.isnan(y.toarray()[:, 0]).all()


# -- non-canonical and malformed input ------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_duplicates_and_unsorted_indices(rng, fmt):
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    # Row/column 0 holds (1, 3) twice and (2, 0) out of order.
    data = np.array([1.0, 5.0, 2.0, np.nan, 4.0, 3.0])
    indices = np.array([1, 2, 0, 1, 1, 0])
    indptr = np.array([0, 3, 6])
    X = cls((data, indices, indptr), shape=(2, 3) if fmt == "csr" else (3, 2))
    before = pickle.dumps(X)
    canonical = cls(X.toarray())
    a = _bn().fit(X)
    b = _bn().fit(canonical)
    assert_array_equal(a.running_mean_, b.running_mean_)
    assert_array_equal(a.running_var_, b.running_var_)
    _dense_equal(a.transform(X), b.transform(canonical), rtol=1e-15, equal_nan=True)
    assert pickle.dumps(X) == before
    dense = naive.sparse_to_dense(data, indices, indptr, X.shape, fmt == "csr")
    assert_allclose(
        a.running_var_, np.where(np.isnan(dense).all(0), 1.0, np.nanvar(dense, 0))
    )


def _malformed(kind):
    X = sp.csr_matrix(np.arange(12.0).reshape(3, 4))
    if kind == "index_too_large":
        X.indices[2] = 4
    elif kind == "negative_index":
        X.indices[0] = -1
    elif kind == "indptr_decreasing":
        X.indptr[1], X.indptr[2] = X.indptr[2], X.indptr[1]
    elif kind == "indptr_beyond_data":
        X.indptr[-1] = 50
    elif kind == "indptr_jump":
        X.indptr[1] = 40
    elif kind == "indptr_short":
        X.indptr = X.indptr[:-1]
    elif kind == "indptr_not_from_zero":
        X.indptr[0] = 1
    return X


@pytest.mark.parametrize(
    "kind",
    [
        "index_too_large",
        "negative_index",
        "indptr_decreasing",
        "indptr_beyond_data",
        "indptr_jump",
        "indptr_short",
        "indptr_not_from_zero",
    ],
)
@pytest.mark.parametrize("method", ["fit", "transform"])
def test_malformed_matrix_is_a_value_error(kind, method):
    X = _malformed(kind)
    bn = _bn().fit(np.ones((2, 4)))
    before = pickle.dumps(bn.__dict__)
    with pytest.raises(ValueError, match="malformed"):
        getattr(bn, method)(X)
    assert pickle.dumps(bn.__dict__) == before


# -- errors and what they leave -------------------------------------------------


def test_with_mean_true_says_sparse(rng):
    X = _random(rng)
    for method in ("fit", "partial_fit", "fit_transform", "partial_fit_transform"):
        with pytest.raises(ValueError, match="with_mean") as info:
            getattr(BatchNormalizer(), method)(X)
        assert "sparse" in str(info.value)
    bn = BatchNormalizer().fit(X.toarray())
    with pytest.raises(ValueError, match="sparse"):
        bn.transform(X)


def test_beta_must_be_zero(rng):
    X = _random(rng)
    bn = _bn(beta=0.5).fit(X)  # fitting needs no beta
    for method in ("transform", "inverse_transform", "fit_transform"):
        with pytest.raises(ValueError, match="beta.*center=False") as info:
            getattr(bn, method)(X)
    assert "toarray" in str(info.value)
    y = _bn(beta=0.5, center=False).fit_transform(X)
    assert sp.issparse(y)


@pytest.mark.parametrize(
    "option, match",
    [
        ({"renorm": (2.0, 1.0)}, "renorm"),
        ({"virtual_batch_size": 10}, "virtual_batch_size"),
        ({"axis": 0}, "axis"),
        ({"axis": (0, 1)}, "axis"),
        ({"device": "cuda"}, "device"),
    ],
)
def test_options_that_need_dense_input(rng, option, match):
    X = _random(rng, shape=(20, 4))
    with pytest.raises(ValueError, match=match):
        bn = _bn(**option)
        bn.partial_fit(X)
        bn.partial_fit_transform(X)


def test_renorm_refused_by_the_backend(rng):
    X = _random(rng, shape=(20, 4))
    layout = None
    with pytest.raises(ValueError, match="dense input"):
        for_input(X).train_normalize(layout, None, 1, 0, 1e-5, None, (2, 1), None)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize(
    "method", ["fit", "partial_fit", "partial_fit_transform", "transform"]
)
@pytest.mark.parametrize("copy", [True, False])
def test_infinity_names_the_feature_and_changes_nothing(rng, fmt, method, copy):
    X = _random(rng, shape=(30, 5)).asformat(fmt)
    dense = X.toarray()
    dense[7, 3] = np.inf
    dense[2, 1] = -np.inf
    Xinf = sp.csr_matrix(dense).asformat(fmt)
    bn = _bn(copy=copy).fit(X)
    before = pickle.dumps(bn.__dict__), pickle.dumps(Xinf)
    with pytest.raises(ValueError, match="infinity") as sparse_error:
        getattr(bn, method)(Xinf)
    assert (pickle.dumps(bn.__dict__), pickle.dumps(Xinf)) == before
    with pytest.raises(ValueError, match="infinity") as dense_error:
        getattr(_bn(copy=copy).fit(X), method)(dense)
    assert str(sparse_error.value) == str(dense_error.value)
    assert "feature 1, 3" in str(sparse_error.value)


def test_bad_sample_weight_changes_nothing(rng):
    X = _random(rng, shape=(30, 5))
    bn = _bn().fit(X)
    before = pickle.dumps(bn.__dict__)
    for w in (-np.ones(30), np.ones(29), np.zeros(30)):
        with pytest.raises(ValueError, match="sample_weight|inconsistent|30"):
            bn.partial_fit(X, sample_weight=w)
    assert pickle.dumps(bn.__dict__) == before


def test_complex_data_is_refused():
    X = sp.csr_matrix(np.array([[1 + 1j, 0], [0, 2]]))
    with pytest.raises(ValueError, match="complex|real"):
        _bn().fit(X)


def test_wrong_feature_count(rng):
    bn = _bn().fit(_random(rng, shape=(20, 4)))
    with pytest.raises(ValueError, match="3 features"):
        bn.transform(_random(rng, shape=(20, 3)))


# -- copy -----------------------------------------------------------------------


@pytest.mark.parametrize("container", CONTAINERS)
def test_copy_true_leaves_input_and_shares_nothing(rng, container):
    X = container(_random(rng))
    before = pickle.dumps(X)
    bn = _bn().fit(X)
    y = bn.transform(X)
    assert pickle.dumps(X) == before
    assert not np.shares_memory(y.data, X.data)
    assert not np.shares_memory(y.indices, X.indices)
    assert not np.shares_memory(y.indptr, X.indptr)


@pytest.mark.parametrize("container", CONTAINERS)
def test_copy_false_scales_in_place(rng, container):
    X = container(_random(rng, nan=0.1))
    bn = _bn().fit(X)
    want = bn.transform(X)
    y = bn.transform(X, copy=False)
    assert y is X
    _same_sparse(y, want)


def test_copy_false_on_converted_input_leaves_it(rng):
    X = _random(rng).astype(np.int64)
    before = pickle.dumps(X)
    y = _bn().fit(X).transform(X, copy=False)
    assert y is not X and y.dtype == np.float64
    assert pickle.dumps(X) == before


def test_pickled_estimator_transforms_the_same(rng):
    X = _random(rng)
    bn = _bn().fit(X)
    _same_sparse(pickle.loads(pickle.dumps(bn)).transform(X), bn.transform(X))


def test_dense_fit_sparse_transform_and_back(rng):
    X = _random(rng)
    bn = _bn().fit(X.toarray())
    _dense_equal(bn.transform(X), bn.transform(X.toarray()), rtol=1e-15)


def test_dask_of_sparse_blocks_is_refused(rng):
    da = pytest.importorskip("dask.array")
    X = da.from_array(_random(rng, shape=(20, 4)), chunks=(10, 4), asarray=False)
    with pytest.raises((ValueError, TypeError), match="sparse"):
        _bn().fit(X)


@pytest.mark.parametrize("container", CONTAINERS)
def test_training_mode_normalizes_by_the_batch(rng, container):
    first = container(_random(rng, shape=(50, 4)))
    X = container(_random(rng, shape=(80, 4), nan=0.05))
    bn = _bn(eps=EPS, momentum=0.9).fit(first)
    y = bn.partial_fit_transform(X)
    assert type(y) is type(X)
    want = StandardScaler(with_mean=False).fit_transform(X)
    _dense_equal(y, want, rtol=1e-12, equal_nan=True)
    # The running statistics moved by the momentum update.
    batch_mean = np.nanmean(X.toarray(), axis=0)
    assert_allclose(
        bn.running_mean_,
        0.9 * _bn().fit(first).running_mean_ + 0.1 * batch_mean,
        rtol=1e-12,
    )


def test_without_std_scales_by_gamma_only(rng):
    X = _random(rng, shape=(40, 3), nan=0.1)
    gamma = np.array([2.0, -1.0, 0.5])
    y = _bn(with_std=False, gamma=gamma).fit_transform(X)
    _dense_equal(y, X.toarray() * gamma, rtol=0, equal_nan=True)
    assert type(y) is type(X)


def test_sparse_tag_follows_with_mean():
    assert BatchNormalizer(with_mean=False).__sklearn_tags__().input_tags.sparse
    assert not BatchNormalizer().__sklearn_tags__().input_tags.sparse


def test_copy_false_on_non_canonical_input_leaves_it():
    # (0, 1) stored twice, row 1 unsorted: the statistics need the sums.
    X = sp.csr_matrix(
        (np.array([1.0, 2.0, 5.0, 3.0]), np.array([1, 1, 2, 0]), np.array([0, 2, 4])),
        shape=(2, 3),
    )
    before = pickle.dumps(X)
    bn = _bn().fit(X)
    assert_allclose(bn.running_mean_, [1.5, 1.5, 2.5])
    y = bn.transform(X, copy=False)
    assert y is not X and pickle.dumps(X) == before
    _dense_equal(y, bn.transform(X.toarray()), rtol=1e-15)
