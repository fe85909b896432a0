"""skbn: batch normalization on Numba kernels, as scikit-learn transformers."""

from .batch_norm import BatchNormalizer

__version__ = "0.1.0"

__all__ = ["BatchNormalizer", "__version__"]
