"""scikit-learn's estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skbn import BatchNormalizer


@parametrize_with_checks(
    [
        BatchNormalizer(),
        BatchNormalizer(momentum=None),
        BatchNormalizer(track_batch_stats=True, max_batch_stats=3),
        # Tagged as taking sparse input: scikit-learn's sparse checks run.
        BatchNormalizer(with_mean=False, momentum=None),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
