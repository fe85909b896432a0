"""skbn: batch normalization on Numba kernels, as scikit-learn transformers."""

from .batch_norm import BatchNormalizer
from .per_sample import GroupNormalizer, InstanceNormalizer, LayerNormalizer

__version__ = "0.1.0"

__all__ = [
    "BatchNormalizer",
    "GroupNormalizer",
    "InstanceNormalizer",
    "LayerNormalizer",
    "__version__",
]
