"""The math of skbn, once: how work is cut, moments, the normalize step,
and the views that every normalization is computed on.

Nothing here knows about estimators or about where the data lives: the
backends (:mod:`skbn._backends`) call these routines on NumPy arrays and the
estimators and :mod:`skbn.functional` call the backends.
"""
