"""The verdict of an image reconstruction (the vocabulary of :mod:`oiflow.verdict`).

Decided on the finished result, from what it fitted, in this order (several apply: the worst
status wins, every reason is kept, :func:`oiflow.verdict.worst`):

``failed``
    the final χ² is not a finite number (damaged data or an overflowing objective).
``poor-fit``
    the image does not explain the data: the reduced χ² of an observable (V², T3 phase,
    T3 amplitude, VIS amplitude, VIS phase), or of all data together, is above
    ``max(POOR_FIT_CHI2, 1 + 5·√(2/N))`` for its N points — :data:`POOR_FIT_CHI2` = 3 (error
    bars underestimated by more than √3, or an image that does not reproduce the data; the
    second term keeps a 5σ margin where N is small: N < 13). A regularisation weight that ran
    away (a flat or garbage image) ends here.
``maxiter``
    the optimiser stopped at the iteration limit (MAXITER: every optimisation of the
    reconstruction together) before its convergence test; the reason tells how χ²_red was still
    moving over the last iterations.
``not-at-minimum``
    the optimiser stopped because its line search could not decrease the objective.
``ok``
    none of the above: converged, and every observable fits.

When the automatic weight (``mu: auto``, :mod:`oiflow.image.mu_rule`) could not reach its χ²
target, or stopped at a bound of its range, the rule's own sentence joins the reasons (and
``mu_rule_reached`` the figures) whatever the status.

Only ``ok`` is ok: IMAGE-OI ``CONVERGE`` is T only then, ``oiflow image`` and
``oiflow-image-ci`` exit 1 otherwise (with the file written and marked).
"""

from __future__ import annotations

import math

from ..verdict import FAILED, MAXITER, NOT_AT_MINIMUM, OK, POOR_FIT, Verdict, worst
from .optimize import MAXITER_MESSAGE

#: the reduced χ² above which an observable (or all data) is a poor fit, for N ≥ 13 points
POOR_FIT_CHI2 = 3.0
#: the statistical margin, in standard deviations of χ²_red (√(2/N)), for few points
POOR_FIT_SIGMAS = 5.0

#: names of the terms for people
TERM_LABELS = {"vis2": "V²", "t3phi": "T3 phase", "t3amp": "T3 amplitude", "visamp": "VIS amplitude",
               "visphi": "VIS phase"}



def chi2_threshold(n: int) -> float:
    """The reduced χ² above which ``n`` points are a poor fit (see the module docstring)."""
    return max(POOR_FIT_CHI2, 1.0 + POOR_FIT_SIGMAS * math.sqrt(2.0 / max(int(n), 1)))


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def image_verdict(result) -> Verdict:
    """The :class:`~oiflow.verdict.Verdict` of an :class:`~oiflow.image.reconstruct.ImageResult`:
    status and reasons by the rule of the module docstring; figures: χ²_red of all data and per
    observable, their thresholds and numbers of points, μ, iterations, MAXITER, the optimiser's
    own stopping test and message."""
    counts = {term: int(n) for term, n in (result.used or {}).items()}
    ndata = int(result.ndata)
    chi2 = float(result.chi2)
    figures = {"chi2": chi2, "chi2_max": chi2_threshold(ndata), "ndata": ndata, "mu": float(result.mu),
               "regularization": result.regularization, "niter": int(result.niter),
               "maxiter": int(result.settings.maxiter), "optimizer_converged": bool(result.converged),
               "optimizer_message": str(result.message)}
    verdicts = []
    if not math.isfinite(chi2):
        verdicts.append(Verdict(FAILED, (f"χ²_red is {chi2}: damaged data or an overflowing objective",)))
    poor = []
    for term, value in result.chi2_terms.items():
        n = counts.get(term, ndata)
        limit = chi2_threshold(n)
        figures[f"chi2_{term}"] = float(value)
        figures[f"chi2_max_{term}"] = limit
        figures[f"n_{term}"] = n
        if math.isfinite(value) and value > limit:
            poor.append(f"χ²_red {_fmt(value)} > {_fmt(limit)} for {TERM_LABELS.get(term, term)} ({n} points)")
    if math.isfinite(chi2) and chi2 > figures["chi2_max"]:
        poor.insert(0, f"χ²_red {_fmt(chi2)} > {_fmt(figures['chi2_max'])} for all data ({ndata} points)")
    if poor:
        verdicts.append(Verdict(POOR_FIT, tuple(poor)))
    if not result.converged:
        if str(result.message) == MAXITER_MESSAGE:
            verdicts.append(Verdict(MAXITER, (f"stopped at MAXITER = {result.settings.maxiter} before converging"
                                              + _progress(result),)))
        else:
            verdicts.append(Verdict(NOT_AT_MINIMUM, (f"optimiser stopped: {result.message}",)))
    rule = result.mu_rule or {}
    if rule:
        figures["mu_rule_reached"] = rule.get("reached")
        figures["mu_rule_at_bound"] = rule.get("at_bound")
    note = _mu_rule_note(result)
    if note:
        verdicts.append(Verdict(OK, (note,)))
    v = worst(verdicts) if verdicts else Verdict(OK)
    return Verdict(v.status, v.reasons, figures)


#: iterations over which the progress at MAXITER is told
PROGRESS_WINDOW = 50


def _progress(result) -> str:
    """How the fit was still moving when MAXITER stopped it: χ²_red over the last
    :data:`PROGRESS_WINDOW` iterations (more iterations, or ``maxiter``, would go on from there)."""
    hist = [h for h in (getattr(result, "history", None) or []) if h.get("chi2_red") is not None]
    if len(hist) < 2:
        return ""
    k = min(PROGRESS_WINDOW, len(hist) - 1)
    old, new = hist[-1 - k]["chi2_red"], hist[-1]["chi2_red"]
    trend = "still falling" if new < old else "not falling"
    return f" (χ²_red {trend}: {_fmt(old)} → {_fmt(new)} over the last {k} iterations)"


def _mu_rule_note(result) -> str | None:
    """The automatic weight rule's sentence, when it did not simply fit its target."""
    rule = result.mu_rule or {}
    if rule.get("reached") is False or rule.get("at_bound"):
        return next((m for m in result.messages if "μ =" in m and "χ²_red" in m), None)
    return None
