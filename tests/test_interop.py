"""PyTorch and Keras converters: same inference output, round trips."""

import numpy as np
import pytest

from skbn import BatchNormalizer

# -- Keras (the weights are plain arrays: no Keras needed) ----------------------


def _keras_inference(x, weights, eps, center=True, scale=True):
    """What Keras' BatchNormalization computes in inference mode."""
    weights = list(weights)
    gamma = weights.pop(0) if scale else 1.0
    beta = weights.pop(0) if center else 0.0
    mean, var = weights
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_keras_weights_order_and_round_trip(rng, center, scale):
    X = rng.normal(3.0, 2.0, size=(200, 3))
    bn = BatchNormalizer(center=center, scale=scale, eps=1e-3, momentum=0.99)
    bn.fit(X)
    bn.gamma_, bn.beta_ = np.array([0.5, 1.0, 2.0]), np.array([1.0, -1.0, 0.0])
    weights = bn.to_keras_weights()
    assert len(weights) == 2 + center + scale
    np.testing.assert_array_equal(weights[-2], bn.running_mean_)
    np.testing.assert_array_equal(weights[-1], bn.running_var_)
    np.testing.assert_allclose(
        bn.transform(X), _keras_inference(X, weights, 1e-3, center, scale), rtol=1e-12
    )
    back = BatchNormalizer.from_keras_weights(weights, center=center, scale=scale)
    assert back.get_params()["momentum"] == 0.99 and back.eps == 1e-3
    np.testing.assert_allclose(back.transform(X), bn.transform(X), rtol=1e-12)
    assert back.to_keras_weights()[-1] is not back.running_var_  # copies


def test_from_keras_weights_checks(rng):
    with pytest.raises(ValueError, match=r"\[gamma, beta, moving_mean"):
        BatchNormalizer.from_keras_weights([np.ones(2)] * 3)
    with pytest.raises(ValueError, match="variance must be non-negative"):
        BatchNormalizer.from_keras_weights(
            [np.ones(2), np.zeros(2), np.zeros(2), -np.ones(2)]
        )
    with pytest.raises(ValueError, match="gamma must have 2 values"):
        BatchNormalizer.from_keras_weights(
            [np.ones(3), np.zeros(2), np.zeros(2), np.ones(2)]
        )
    images = BatchNormalizer.from_keras_weights(
        [np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)], ndim=4
    )
    assert images.transform(rng.normal(size=(2, 5, 5, 3))).shape == (2, 5, 5, 3)
    # A loaded estimator keeps learning with momentum from its statistics.
    images.partial_fit(np.full((2, 5, 5, 3), 10.0))
    np.testing.assert_allclose(images.running_mean_, 0.01 * 10.0)


# -- PyTorch ----------------------------------------------------------------------

torch = pytest.importorskip("torch")

LAYOUTS = [
    ((64, 5), -1, torch.nn.BatchNorm1d),
    ((32, 5, 7), 1, torch.nn.BatchNorm1d),
    ((16, 5, 6, 4), 1, torch.nn.BatchNorm2d),
    ((8, 5, 3, 4, 2), 1, torch.nn.BatchNorm3d),
]


def _eval(module, X):
    with torch.no_grad():
        return module.eval()(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("shape, axis, module_cls", LAYOUTS)
@pytest.mark.parametrize("affine", [True, False])
def test_state_dict_gives_transform_in_eval(rng, shape, axis, module_cls, affine):
    X = rng.normal(4.0, 3.0, size=shape)
    bn = BatchNormalizer(axis=axis, center=affine, scale=affine, eps=1e-4)
    for part in np.array_split(X, 4):
        bn.partial_fit(part)
    if affine:
        bn.gamma_ = rng.uniform(0.5, 2.0, size=5)
        bn.beta_ = rng.normal(size=5)
    module = module_cls(5, eps=1e-4, affine=affine, dtype=torch.float64)
    module.load_state_dict(bn.to_torch_state_dict())
    assert int(module.num_batches_tracked) == 4
    err = np.max(np.abs(_eval(module, X) - bn.transform(X)))
    assert err <= 1e-9, err
    built = bn.to_torch_module()
    assert type(built) is module_cls and built.affine is affine
    np.testing.assert_allclose(_eval(built, X), bn.transform(X), rtol=0, atol=1e-9)


def test_partial_affine_exports_identity(rng):
    X = rng.normal(size=(20, 3))
    bn = BatchNormalizer(scale=False, center=True).fit(X)
    bn.gamma_ = np.full(3, 7.0)  # ignored by transform when scale=False
    state = bn.to_torch_state_dict()
    np.testing.assert_array_equal(state["weight"].numpy(), np.ones(3))
    module = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    module.load_state_dict(state)
    np.testing.assert_allclose(_eval(module, X), bn.transform(X), atol=1e-12)


@pytest.mark.parametrize("momentum", [0.9, 0.25, None])
def test_momentum_convention(momentum):
    bn = BatchNormalizer(momentum=momentum).fit(np.eye(3))
    module = bn.to_torch_module()
    assert module.momentum == (None if momentum is None else 1 - momentum)
    assert BatchNormalizer.from_torch(module).momentum == momentum


@pytest.mark.parametrize("shape, axis, module_cls", LAYOUTS)
def test_from_torch_round_trip(rng, shape, axis, module_cls):
    X = rng.normal(-2.0, 0.5, size=shape)
    bn = BatchNormalizer(axis=axis, momentum=0.8, eps=1e-3).fit(X)
    bn.gamma_, bn.beta_ = rng.uniform(1, 2, size=5), rng.normal(size=5)
    ndim = len(shape) if len(shape) == 3 else None
    back = BatchNormalizer.from_torch(bn.to_torch_module(), ndim=ndim)
    for name in ("momentum", "eps", "center", "scale"):
        assert getattr(back, name) == getattr(bn, name)
    for name in ("running_mean_", "running_var_", "gamma_", "beta_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(bn, name))
    assert back.n_batches_seen_ == bn.n_batches_seen_
    np.testing.assert_array_equal(back.transform(X), bn.transform(X))


def test_from_torch_trained_module(rng):
    module = torch.nn.BatchNorm2d(3, momentum=0.3)  # float32, trained in torch
    with torch.no_grad():
        for _ in range(5):
            module(torch.randn(8, 3, 4, 4) * 2 + 1)
    bn = BatchNormalizer.from_torch(module)
    assert bn.momentum == pytest.approx(0.7) and bn.n_batches_seen_ == 5
    X = rng.normal(1.0, 2.0, size=(4, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(bn.transform(X), _eval(module, X), atol=1e-5)
    # It keeps learning from there with the same momentum rule as torch's mean.
    batch = rng.normal(size=(8, 3, 4, 4)).astype(np.float32)
    expected = 0.7 * bn.running_mean_ + 0.3 * batch.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.partial_fit(batch).running_mean_, expected, rtol=1e-5)


def test_fresh_module_counts_as_unseen(rng):
    bn = BatchNormalizer.from_torch(torch.nn.BatchNorm1d(2))
    batch = rng.normal(5.0, 1.0, size=(10, 2))
    # No zero-initialization bias: the first batch sets the statistics.
    np.testing.assert_allclose(bn.partial_fit(batch).running_mean_, batch.mean(axis=0))


def test_torch_errors():
    with pytest.raises(ValueError, match="track_running_stats"):
        BatchNormalizer.from_torch(torch.nn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        BatchNormalizer.from_torch(torch.nn.LayerNorm(2))
    with pytest.raises(ValueError, match="axis 1"):
        BatchNormalizer().fit(np.ones((2, 3, 4))).to_torch_module()
    bn = BatchNormalizer()
    with pytest.raises(AttributeError):  # sklearn's NotFittedError
        bn.to_torch_state_dict()
