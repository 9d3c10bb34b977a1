"""Verdicts: what a result is worth, in a form a machine can act on.

Every L3 result (a model fit, a companion search, an image) carries a :class:`Verdict`: a
``status`` from the fixed vocabulary below, the ``reasons`` behind it (one line of text each,
naming parameters, observables, figures) and ``figures`` (the numbers the status was decided
on: χ²_red per observable, iterations, μ, gradient norms…). The same dict travels into the
product itself (FIT JSON ``verdict``, IMAGE-OI OUTPUT PARAM ``VERDICT``/``CONVERGE``), the
catalogue (``granule.verdict``), the run summary and the command's output and exit code.

Statuses, from the best to the worst (:func:`worst` combines several):

``ok``
    converged and fits the data (χ²_red within the stated threshold): use it.
``poor-fit``
    converged, but χ²_red above the stated threshold: the model or image does not explain the
    data (or the error bars are underestimated); errors were scaled, and the reasons say so.
``at-bound``
    a parameter ended on a bound of its allowed range: the value is a limit, not a measurement.
``maxiter``
    stopped at the iteration limit before convergence: the result may still change.
``not-at-minimum``
    the optimiser stopped where the gradient is not zero or the Hessian is not positive
    definite, or a lower minimum exists: the values are not the best fit.
``unconstrained``
    at least one free parameter is not constrained by the data (its error is infinite).
``failed``
    no result (the unit failed; the reasons give the error).

Only ``ok`` is ok. Commands exit 1 on the statuses their help names (``oiflow image`` on
anything but ``ok``; ``oiflow fit`` on ``not-at-minimum`` and ``unconstrained``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

OK = "ok"
POOR_FIT = "poor-fit"
AT_BOUND = "at-bound"
MAXITER = "maxiter"
NOT_AT_MINIMUM = "not-at-minimum"
UNCONSTRAINED = "unconstrained"
FAILED = "failed"

#: every status, from the best to the worst
STATUSES = (OK, POOR_FIT, AT_BOUND, MAXITER, NOT_AT_MINIMUM, UNCONSTRAINED, FAILED)
_RANK = {s: k for k, s in enumerate(STATUSES)}


def _check(status: str) -> str:
    if status not in _RANK:
        raise ValueError(f"unknown verdict status {status!r} (one of {', '.join(STATUSES)})")
    return status


@dataclass(frozen=True)
class Verdict:
    """A status (see the module docstring), its reasons and the figures it was decided on."""

    status: str = OK
    reasons: tuple[str, ...] = ()
    figures: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check(self.status)
        object.__setattr__(self, "reasons", tuple(str(r) for r in self.reasons))
        object.__setattr__(self, "figures", dict(self.figures))

    @property
    def ok(self) -> bool:
        return self.status == OK

    def line(self) -> str:
        """One line for people: ``verdict: poor-fit (χ²_red 12.3 > 3 for V2)``."""
        return f"verdict: {self.status}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "reasons": list(self.reasons), "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Verdict | None":
        if not data:
            return None
        return cls(status=data["status"], reasons=tuple(data.get("reasons", ())), figures=data.get("figures", {}))


def worst(verdicts: Iterable[Verdict | None]) -> Verdict:
    """One verdict for several results: the worst status, every reason (in order, once)."""
    vs = [v for v in verdicts if v is not None]
    if not vs:
        return Verdict()
    status = max((v.status for v in vs), key=_RANK.__getitem__)
    reasons: list[str] = []
    for v in vs:
        reasons += [r for r in v.reasons if r not in reasons]
    return Verdict(status, tuple(reasons))


def rank(status: str) -> int:
    """Position of ``status`` in :data:`STATUSES` (0 = ok)."""
    return _RANK[_check(status)]
