"""What a fit found, in words: the short result of the products tables (``oiflow run``,
``oiflow products``) and the fitted values of the plot titles.

Rule of the numbers: an error is shown with one significant digit (two when that digit is 1)
and its value rounded to the same decimal place ("8.262 ± 0.019 mas", "60.0 ± 0.3°"); an
unconstrained parameter's error is "∞"; sizes and offsets in mas, angles in degrees, flux
ratios without unit.

Short results (one line, at most a few tens of characters):

* a model with two located components (a binary): ``sep 4.50 ± 0.02 mas, PA 60.0 ± 0.3°, f 0.300 ± 0.004``
  (separation, position angle North through East, flux ratio faint/bright);
* otherwise the size of each extended component: ``UD 8.26 ± 0.02 mas`` (``LD``, ``FWHM``,
  ``ring``), and the free parameters when there is none of these;
* a companion search: ``sep 29.19 mas, PA 167.7°, f 0.0087, 8.8σ``.
"""

from __future__ import annotations

import math

#: label of the size parameter of each component type in a short result
_SIZE = {"ud": ("diameter", "UD"), "ld": ("diameter", "LD"), "gaussian": ("fwhm", "FWHM"), "ring": ("diameter", "ring")}


def _decimals(error: float) -> int:
    """Decimal places that show ``error`` with one significant digit (two when it is 1)."""
    exp = math.floor(math.log10(error))
    lead = error / 10**exp
    return max(0, -exp + (1 if lead < 2 else 0))


def value_error(value: float, error: float | None, unit: str = "") -> str:
    """``value ± error unit`` by the module's rule; ``± ∞`` when unconstrained, the value alone
    (4 significant digits) when the error is not known. Degrees are written ``°``."""
    sep = "" if unit in ("deg", "°") else " "
    unit = "°" if unit == "deg" else unit
    tail = f"{sep}{unit}" if unit else ""
    if error is None or (isinstance(error, float) and math.isnan(error)):
        return f"{value:.4g}{tail}"
    if not math.isfinite(error):
        return f"{value:.4g} ± ∞{tail}"
    if error <= 0:
        return f"{value:.4g} ± 0{tail}"
    d = _decimals(error)
    return f"{value:.{d}f} ± {error:.{d}f}{tail}"


def fit_headline(result) -> str:
    """The short result of a :class:`~oiflow.fit.fitter.FitResult` (module docstring)."""
    d = result.derived
    if d and "separation_mas" in d:
        return (f"sep {value_error(d['separation_mas'], d.get('separation_mas_error'), 'mas')}, "
                f"PA {value_error(d['position_angle_deg'], d.get('position_angle_deg_error'), 'deg')}, "
                f"f {value_error(d['flux_ratio'], d.get('flux_ratio_error'))}")
    parts = []
    for c in result.model.components:
        key, label = _SIZE.get(c.type, (None, None))
        name = f"{c.name}.{key}"
        if key and name in result.reported():
            parts.append(f"{label} {value_error(result.values[name], result.errors.get(name), result.unit(name))}")
    if not parts:
        parts = [f"{n} {value_error(result.values[n], result.errors.get(n), result.unit(n))}"
                 for n in result.reported()]
    return ", ".join(parts)


def fit_values(result) -> list[str]:
    """Every reported parameter as ``name = value ± error unit`` (the plot titles)."""
    return [f"{n} = {value_error(result.values[n], result.errors.get(n), result.unit(n))}" for n in result.reported()]


def companion_headline(result) -> str:
    """The short result of a :class:`~oiflow.fit.companion.CompanionResult`: the best companion
    and its significance."""
    return (f"sep {result.separation_mas:.2f} mas, PA {result.position_angle_deg:.1f}°, "
            f"f {result.best['flux_ratio']:.2g}, {result.nsigma:.1f}σ")
