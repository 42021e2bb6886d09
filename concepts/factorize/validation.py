"""scikit-learn parameter validation and fitted-state errors, in the package's one-line error style.

Every estimator declares ``_parameter_constraints`` (scikit-learn's ``Interval``, ``StrOptions``, "boolean",
"random_state", None, types ...).  ``fit`` checks them the scikit-learn way (``_fit_context``), and
:func:`validate_params` checks them up front with a one-line message naming the parameter, the value and
what is allowed, e.g. ``nmf: max_iter: -5 is not allowed; expected an int in the range [1, inf)``.

The errors are both the package's :class:`~concepts.errors.ConceptsError` (the CLI prints one line) and
scikit-learn's own exception (:class:`InvalidParameterError`, :class:`NotFittedError`), so code written
for either keeps working.
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError, Options, make_constraint

from ..errors import ConceptsError


class InvalidParameter(ConceptsError, InvalidParameterError):
    """A parameter outside its constraints (a ValueError and a TypeError, as scikit-learn's)."""


class NotFitted(ConceptsError, NotFittedError):
    """transform / inverse_transform called before fit (scikit-learn's NotFittedError)."""


def _describe(constraint) -> str:
    if isinstance(constraint, Options):  # sorted, so that the message does not depend on set order
        text = str(constraint)
        head = text[: text.index("{")]
        return head + "{" + ", ".join(repr(o) for o in sorted(constraint.options, key=repr)) + "}"
    return str(constraint)


def _short_repr(value, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid_parameter(estimator) -> tuple[str, object, str] | None:
    """The first parameter of ``estimator`` that violates its ``_parameter_constraints``, as
    ``(name, value, what is allowed)``; None when every parameter is allowed."""
    params = estimator.get_params(deep=False)
    for name, constraints in getattr(estimator, "_parameter_constraints", {}).items():
        if constraints == "no_validation" or name not in params:
            continue
        made = [make_constraint(c) for c in constraints]
        value = params[name]
        if any(c.is_satisfied_by(value) for c in made):
            continue
        shown = [c for c in made if not c.hidden] or made
        allowed = [_describe(c) for c in shown]
        expected = allowed[0] if len(allowed) == 1 else ", ".join(allowed[:-1]) + " or " + allowed[-1]
        return name, value, expected
    return None


def validate_params(estimator, prefix: str | None = None) -> None:
    """Check every parameter of ``estimator`` against its ``_parameter_constraints``.

    Raises :class:`InvalidParameter` (a ConceptsError) with one line:
    ``<prefix>: <param>: <value> is not allowed; expected <allowed values>``; ``prefix`` defaults to the
    estimator's short ``method`` name (else its class name).
    """
    bad = invalid_parameter(estimator)
    if bad is None:
        return
    name, value, expected = bad
    prefix = prefix or getattr(estimator, "method", "") or type(estimator).__name__
    raise InvalidParameter(f"{prefix}: {name}: {_short_repr(value)} is not allowed; expected {expected}")
