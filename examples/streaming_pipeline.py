"""Stream mini-batches through BatchNormalizer, then use it in a Pipeline.

Two ways to use ``skbn.BatchNormalizer`` with scikit-learn:

1. Out of core: data arrives one mini-batch at a time.  ``partial_fit`` folds
   each batch into the running statistics, and a classifier with
   ``partial_fit`` learns from the normalized batch.  The two fitted steps
   are then joined into a ``Pipeline`` for prediction.
2. In memory: ``BatchNormalizer`` is an ordinary ``Pipeline`` step that
   ``fit``, ``cross_val_score`` or ``GridSearchCV`` can drive.

Run it with ``python examples/streaming_pipeline.py``; it takes a few seconds.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from skbn import BatchNormalizer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)


def mini_batches(X, y, batch_size, rng):
    """Yield shuffled mini-batches, as a data loader or a file reader would."""
    order = rng.permutation(len(X))
    for start in range(0, len(X), batch_size):
        rows = order[start : start + batch_size]
        yield X[rows], y[rows]


# 1. Streaming.  momentum=0.9 keeps 90% of the running statistics at each
# batch (PyTorch calls this momentum=0.1); momentum=None would pool every
# sample exactly, like StandardScaler.partial_fit.
bn = BatchNormalizer(momentum=0.9)
clf = SGDClassifier(random_state=0)
classes = np.unique(y)  # partial_fit must know every class from the first batch
rng = np.random.default_rng(0)
for _epoch in range(3):
    for X_batch, y_batch in mini_batches(X_train, y_train, 64, rng):
        bn.partial_fit(X_batch)
        clf.partial_fit(bn.transform(X_batch), y_batch, classes=classes)

streamed = Pipeline([("batchnormalizer", bn), ("sgdclassifier", clf)])
print(f"streamed over {bn.n_batches_seen_} batches of 64 rows")
print(f"held-out accuracy: {streamed.score(X_test, y_test):.3f}")

# 2. In memory: fit() takes the exact statistics of the training fold.
model = make_pipeline(BatchNormalizer(), LogisticRegression(max_iter=1000))
scores = cross_val_score(model, X, y, cv=5)
print(f"5-fold cross-validated accuracy: {scores.mean():.3f}")
