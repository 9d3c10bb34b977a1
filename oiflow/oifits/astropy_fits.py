"""``astropy.io.fits``, imported without ``astropy.units`` (the start-up of every command that reads FITS).

astropy ≥ 8's ``astropy.utils.data`` (which ``astropy.io.fits`` imports for its URL downloads)
runs ``from astropy.units import Quantity, UnitBase`` for two names it uses only in function
annotations; that import builds astropy's whole unit system, 0.1–0.3 s on a shared machine —
as long as numpy's own import, and a third of an ``oiflow image`` command's start-up. oiflow's
FITS reading never uses units. :func:`import_fits` therefore imports ``astropy.io.fits`` while
``sys.modules["astropy.units"]`` holds a placeholder with those two names (classes standing
for them in the annotations), then removes the placeholder: a later ``import astropy.units``
(``astropy.time``, ``astropy.table``, the catalogue's coordinates…) imports the real package,
unchanged. Only ``astropy.utils.data``'s annotations keep the placeholders.

The placeholder is used only where it is safe, else astropy is imported as usual: in a process
running one Python thread (another thread importing ``astropy.units`` meanwhile would get the
placeholder: a Dask worker imports as usual), when neither ``astropy.units`` nor
``astropy.utils.data`` is imported yet, and the import then succeeds and
leaves the placeholder in no other module than ``astropy.utils.data`` (any failure: the modules
the attempt imported are dropped and astropy is imported normally).
``tests/test_oifits_astropy_import.py`` checks that the installed astropy uses those names in
annotations only, that reading an OIFITS file imports no ``astropy.units`` and that units work
afterwards. Every oiflow module that needs ``astropy.io.fits`` at import time takes it from here.
"""

from __future__ import annotations

import sys
import threading
import types

#: the names astropy.utils.data imports from astropy.units (used in its annotations only)
_ANNOTATION_NAMES = ("Quantity", "UnitBase")
#: the only module allowed to keep a reference to the placeholder
_HOLDER = "astropy.utils.data"


def _placeholder() -> types.ModuleType:
    mod = types.ModuleType("astropy.units", "placeholder of oiflow.oifits.astropy_fits (never used at run time)")
    for name in _ANNOTATION_NAMES:
        setattr(mod, name, type(name, (), {"__module__": mod.__name__}))
    return mod


def _holders(placeholder: types.ModuleType) -> set[str]:
    """Modules that keep the placeholder or one of its classes in their namespace."""
    refs = {id(placeholder), *(id(getattr(placeholder, n)) for n in _ANNOTATION_NAMES)}
    return {name for name, mod in list(sys.modules.items())
            if mod is not None and name != "astropy.units"
            and any(id(v) in refs for v in getattr(mod, "__dict__", {}).values())}


def _remove_placeholder(placeholder: types.ModuleType) -> None:
    if sys.modules.get("astropy.units") is placeholder:
        del sys.modules["astropy.units"]
    astropy = sys.modules.get("astropy")
    if astropy is not None and astropy.__dict__.get("units") is placeholder:  # not getattr: astropy imports lazily
        delattr(astropy, "units")


def import_fits() -> types.ModuleType:
    """``astropy.io.fits`` (module docstring: without ``astropy.units`` where that is safe)."""
    if (threading.active_count() > 1 or "astropy.io.fits" in sys.modules or "astropy.units" in sys.modules
            or _HOLDER in sys.modules):
        from astropy.io import fits

        return fits
    before = set(sys.modules)
    placeholder = _placeholder()
    sys.modules["astropy.units"] = placeholder
    try:
        from astropy.io import fits

        safe = _holders(placeholder) <= {_HOLDER}
    except Exception:
        safe = False
    _remove_placeholder(placeholder)
    if not safe:  # start again without the placeholder
        for name in set(sys.modules) - before:
            if name == "astropy" or name.startswith("astropy."):
                del sys.modules[name]
        from astropy.io import fits
    return fits


fits = import_fits()
