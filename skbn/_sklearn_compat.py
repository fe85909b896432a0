"""Every private scikit-learn name skbn uses, in one place.

scikit-learn keeps these out of its public API, so a release may move or
change them; a failure after an upgrade shows up here and nowhere else.
Checked with scikit-learn 1.6 to 1.9 (the versions ``pyproject.toml``
allows and CI installs).

* ``Interval``, ``StrOptions``, ``validate_parameter_constraints``: the
  declarative parameter checks of ``BaseEstimator._validate_params``, used
  for the estimators' ``_parameter_constraints`` and for the functional
  API's arguments (:mod:`skbn._params`).
* ``wrap_data_with_container``: what ``set_output`` does to a transformer's
  output, for ``partial_fit_transform`` (which scikit-learn does not wrap).
* ``check_feature_names``, ``check_sample_weight``: the checks behind
  ``feature_names_in_`` and ``sample_weight``, so messages match
  scikit-learn's.
"""

from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils._set_output import (
    _wrap_data_with_container as wrap_data_with_container,
)
from sklearn.utils.validation import _check_feature_names as check_feature_names
from sklearn.utils.validation import _check_sample_weight as check_sample_weight

__all__ = [
    "Interval",
    "StrOptions",
    "check_feature_names",
    "check_sample_weight",
    "validate_parameter_constraints",
    "wrap_data_with_container",
]
