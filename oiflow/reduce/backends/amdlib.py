"""amdlib backend: ESO's AMBER recipes (esorex + Debian's cpl-plugin-amber, built on amdlib).

Chain, per night (each recipe is one runner job with its own log and its own SOF file, kept under
``<out>/amdlib/``)::

    classify raw files (DO categories from the DPR keywords, as the pipeline's amber.oca rules)
    amber_p2vm       AMBER_2P2V / AMBER_3P2V set + AMBER_BADPIX + AMBER_FLATFIELD  → P2VM_REDUCED
    amber_SciCal     each AMBER_SCIENCE / AMBER_CALIB / AMBER_SCIENCE_CALIB file
                     + P2VM_REDUCED + AMBER_BADPIX + AMBER_FLATFIELD                → *_REDUCED OIFITS (L1)
    amber_trf        CALIB_REDUCED + CALIB_DATABASE_{J,H,K} (when given)          → AMBER_TRF_{J,H,K}
    amber_calibrate  SCIENCE_REDUCED + AMBER_TRF_* (of the calibrator closest in time, per band)
                                                                                  → SCIENCE_CALIBRATED (L2)

amber_trf (cpl-plugin-amber 4.4.3) computes the calibrator's expected visibility of its 2nd and
3rd baselines (stations 2-3 and 1-3 in amdlib's order 12, 23, 31) from the projected lengths
``ESO ISS PBL13`` and ``ESO ISS PBL23`` respectively, i.e. swapped (measured with simulated
nights: its TRF of those baselines equals measured/expected with the other baseline's length, a
bias of a few per cent for a resolved calibrator). amber_trf gets copies of the CALIB_REDUCED
products named after their observation (``<out>/amdlib/trf_inputs/``); with ``fix_trf_baselines``
(the default) their PBL13/PBL23 cards are exchanged, so that the transfer function is that of the
right baselines (card ``OIFLOW PBLSWAP``). amber_calibrate uses one transfer function per band:
the backend gives it that of the calibrator observed closest in time.

A failed recipe becomes a failure naming the recipe, the file and the recipe's log; one bad
observation fails only itself (a failed P2VM fails the observations that need it). The L1
products are the SciCal OIFITS, renamed ``<raw stem>.fits`` in the output directory, with
oiflow's provenance (inputs and their SHA-256, settings, engine, image) added to the header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

from ...config import ReduceConfig
from ...errors import EngineError, ReductionError
from ...provenance import Provenance, stage_history, write_hdulist_atomic, write_text_atomic
from ...verdict import OK
from ..runners import Job, Runner
from .base import Backend, BackendResult, Requirements, failure_reason, job_limits, run_logged

DEFAULT_IMAGE = "localhost/oiflow-amber:latest"

P2VM_CATEGORIES = ("AMBER_2P2V", "AMBER_3P2V")
OBJECT_CATEGORIES = ("AMBER_SCIENCE", "AMBER_CALIB", "AMBER_SCIENCE_CALIB")
STATIC_CALIB_CATEGORIES = ("AMBER_BADPIX", "AMBER_FLATFIELD", "CALIB_DATABASE_J", "CALIB_DATABASE_H",
                           "CALIB_DATABASE_K")


def _like(value: str, pattern: str) -> bool:
    """The OCA ``like`` operator: SQL-style, % matches anything."""
    return value is not None and pattern.replace("%", "") in value


def classify_header(h) -> str | None:
    """The DO category of a file from its ESO DPR / PRO keywords (rules of the pipeline's amber.oca,
    in the same order: a later matching rule wins). None when no rule matches."""
    catg = str(h.get("HIERARCH ESO DPR CATG", "") or "")
    typ = str(h.get("HIERARCH ESO DPR TYPE", "") or "")
    tech = str(h.get("HIERARCH ESO DPR TECH", "") or "")
    pro = str(h.get("HIERARCH ESO PRO CATG", "") or "")
    calib_or_sci = "CALIB" in catg or "SCIENCE" in catg
    rules = [
        (catg == "ACQUISITION", "ACQUISITION"),
        (catg == "TEST", "TEST"),
        ("3P2V" in typ and calib_or_sci, "AMBER_3P2V"),
        ("ZOFF,3TEL" in typ and calib_or_sci, "AMBER_3ZOFF"),
        ("WAVE,3TEL" in typ and calib_or_sci, "AMBER_3WAVE"),
        ("2P2V" in typ and calib_or_sci, "AMBER_2P2V"),
        ("WAVE,2TEL" in typ and calib_or_sci, "AMBER_2WAVE"),
        ("DARK" in typ and "INTERFEROMETRY" in tech and "CALIB" in catg, "AMBER_DARK_CALIB"),
        ("DARK" in typ and "INTERFEROMETRY" in tech and "SCIENCE" in catg, "AMBER_DARK_SCIENCE"),
        ("OBJECT" in typ and "SCIENCE" in catg and "INTERFEROMETRY" in tech, "AMBER_SCIENCE"),
        ("OBJECT" in typ and "CALIB" in catg, "AMBER_CALIB"),
        ("STD" in typ and "CALIB" in catg and "INTERFEROMETRY" in tech, "AMBER_SCIENCE_CALIB"),
        ("SKY" in typ and "CALIB" in catg, "AMBER_SKY_CALIB"),
        ("SKY" in typ and "SCIENCE" in catg, "AMBER_SKY_SCIENCE"),
        ("P2VM" in typ and "CALIB" in catg, "AMBER_P2VM"),
        ("BADPIX" in typ and "CALIB" in catg, "AMBER_BADPIX"),
        ("FLATFIELD" in typ and "CALIB" in catg, "AMBER_FLATFIELD"),
        ("SCIENCE_REDUCED" in pro, "SCIENCE_REDUCED"),
        ("CALIB_REDUCED" in pro, "CALIB_REDUCED"),
        ("P2VM_REDUCED" in pro, "P2VM_REDUCED"),
        ("AMBER_BADPIX" in pro, "AMBER_BADPIX"),
        ("AMBER_FLATFIELD" in pro, "AMBER_FLATFIELD"),
        ("CALIB_DATABASE_J" in pro, "CALIB_DATABASE_J"),
        ("CALIB_DATABASE_H" in pro, "CALIB_DATABASE_H"),
        ("CALIB_DATABASE_K" in pro, "CALIB_DATABASE_K"),
    ]
    category = None
    for matches, cat in rules:
        if matches:
            category = cat
    return category


@dataclass
class ClassifiedFile:
    path: Path
    category: str | None
    mjd: float
    template: str  # ESO TPL START: files of one template (a P2VM set) share it


def classify_dir(*dirs: Path) -> list[ClassifiedFile]:
    out = []
    for d in dirs:
        for path in sorted(Path(d).glob("*.fits")):
            try:
                h = fits.getheader(path, 0)
            except OSError as exc:
                raise ReductionError(f"{path}: not a readable FITS file ({exc})") from None
            out.append(ClassifiedFile(path, classify_header(h), float(h.get("MJD-OBS", 0.0) or 0.0),
                                      str(h.get("HIERARCH ESO TPL START", "") or "")))
    return out


def write_sof(entries: list[tuple[Path, str]], path: Path) -> Path:
    """An esorex set-of-frames file: one ``<file> <DO category>`` per line."""
    return write_text_atomic("".join(f"{p} {tag}\n" for p, tag in entries), path)


_ERROR_LINE = re.compile(r"\[\s*ERROR\s*\]\s*(?P<who>[\w.]+):\s*(?P<msg>.*)")


def summarize_esorex_log(log: str) -> str:
    """The lines of an esorex log that say why a recipe failed.

    The recipes' own ERROR lines (without esorex's generic 'Execution of recipe … failed' and the
    'Dumping all N error(s)' header); amdlib often reports only through INFO lines, so when there
    are none, the last INFO lines before the end are returned."""
    errors = []
    for line in log.splitlines():
        m = _ERROR_LINE.search(line)
        if not m:
            continue
        msg = m.group("msg").strip()
        if m.group("who") == "esorex" or msg.startswith("Dumping all"):
            continue
        errors.append(msg)
    if errors:
        return "; ".join(dict.fromkeys(errors))
    infos = [ln.split("]", 1)[-1].strip() for ln in log.splitlines() if "[ INFO  ]" in ln]
    infos = [i for i in infos if "End of DataReduction" not in i]
    return "; ".join(infos[-2:]) if infos else "no message from the recipe"


def _products(dirpath: Path) -> list[tuple[Path, str]]:
    """FITS products of a recipe run and their PRO CATG."""
    out = []
    for p in sorted(dirpath.glob("*.fits")):
        try:
            out.append((p, str(fits.getheader(p, 0).get("HIERARCH ESO PRO CATG", ""))))
        except OSError:
            continue
    return out


class AmdlibBackend(Backend):
    name = "amdlib"
    default_image = DEFAULT_IMAGE

    def __init__(self, esorex: str = "esorex", *, scical_params: tuple[str, ...] = (),
                 fix_trf_baselines: bool = True):
        self.esorex = esorex
        self.scical_params = tuple(scical_params)  # e.g. ("--binning=10",)
        self.fix_trf_baselines = fix_trf_baselines

    def requirements(self) -> Requirements:
        return Requirements(image=DEFAULT_IMAGE,
                            command=(self.esorex, "amber_p2vm", "amber_SciCal", "amber_trf", "amber_calibrate"),
                            produces="L1 OIFITS per AMBER object file (amber_SciCal), L2 with a calibrator database")

    # -- one recipe ------------------------------------------------------------------------------
    def run_recipe(self, runner: Runner, config: ReduceConfig, recipe: str, sof: Path, inputs: list[Path],
                   work: Path, result: BackendResult, params: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
        """Run ``esorex <recipe> <sof>`` into ``work`` (log at ``work``.log); its (product, PRO CATG)
        pairs. Raises :class:`RecipeError` naming the recipe, the reason and the log."""
        job = Job(
            command=[self.esorex, "--output-dir={output}", "--log-dir={output}", "--suppress-link=TRUE",
                     recipe, *params, str(sof)],
            image=self.image(config), inputs=sorted({p.resolve() for p in inputs} | {sof.parent.resolve()}),
            output=work, name=f"{recipe} ({sof.stem})", network=config.engine.network, **job_limits(config),
        )
        log_path = work.parent / f"{work.name}.log"
        try:
            run_logged(runner, job, log_path, result)
        except EngineError as exc:
            raise RecipeError(recipe, failure_reason(recipe, exc, log_path, summarize_esorex_log(exc.log)), log_path) from None
        return _products(work)

    # -- the night -------------------------------------------------------------------------------
    def reduce_night(self, raw_dir, out_dir, config: ReduceConfig, runner: Runner) -> BackendResult:
        raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
        result = BackendResult()
        work = out_dir / "amdlib"
        files = classify_dir(raw_dir, *[Path(d) for d in config.calib_dirs])
        by_cat: dict[str, list[ClassifiedFile]] = {}
        for f in files:
            by_cat.setdefault(f.category or "UNKNOWN", []).append(f)
        for f in by_cat.get("UNKNOWN", []):
            result.failures.append((f.path.name, "no AMBER DO category matches its ESO DPR keywords; not reduced"))
        statics = [(f.path, f.category) for f in files if f.category in ("AMBER_BADPIX", "AMBER_FLATFIELD")]
        dirs = [raw_dir, *[Path(d) for d in config.calib_dirs]]

        # P2VM sets: the P2VM files of one template
        p2vm_sets: dict[str, list[ClassifiedFile]] = {}
        for f in files:
            if f.category in P2VM_CATEGORIES:
                p2vm_sets.setdefault(f.template or "p2vm", []).append(f)
        p2vms: list[tuple[float, Path]] = []
        for i, (tpl, members) in enumerate(sorted(p2vm_sets.items(), key=lambda kv: min(m.mjd for m in kv[1]))):
            name = f"p2vm_{i + 1}"
            sof = write_sof([(m.path, m.category) for m in members] + statics, work / "sof" / f"{name}.sof")
            try:
                prods = self.run_recipe(runner, config, "amber_p2vm", sof, dirs, work / name, result)
            except RecipeError as exc:
                result.failures.append((f"P2VM set {name} ({members[0].path.name}…)", str(exc)))
                continue
            for p, catg in prods:
                if catg == "P2VM_REDUCED":
                    p2vms.append((min(m.mjd for m in members), p))

        # objects: amber_SciCal with the P2VM closest in time
        reduced: list[tuple] = []  # (amdlib product, PRO CATG, raw stem, L1 file, MJD-OBS)
        for f in files:
            if f.category not in OBJECT_CATEGORIES:
                continue
            if not p2vms:
                result.failures.append((f.path.name, "no P2VM_REDUCED available (no P2VM set, or amber_p2vm "
                                                     "failed); amber_SciCal needs one"))
                continue
            p2vm = min(p2vms, key=lambda t: abs(t[0] - f.mjd))[1]
            name = f"scical_{f.path.stem}"
            entries = [(f.path, f.category), (p2vm, "P2VM_REDUCED")] + statics
            entries += [(c.path, c.category) for c in files if c.category and c.category.startswith("CALIB_DATABASE")]
            sof = write_sof(entries, work / "sof" / f"{name}.sof")
            try:
                prods = self.run_recipe(runner, config, "amber_SciCal", sof, dirs + [p2vm.parent], work / name, result,
                                        params=self.scical_params)
            except RecipeError as exc:
                result.failures.append((f.path.name, str(exc)))
                continue
            oifits = [(p, c) for p, c in prods if c.endswith("_REDUCED") and c != "P2VM_REDUCED"]
            if not oifits:
                result.failures.append((f.path.name, f"amber_SciCal wrote no *_REDUCED product [log: "
                                                     f"{work / (name + '.log')}]"))
                continue
            product, catg = oifits[0]
            l1 = self._publish(product, out_dir / f"{f.path.stem}.fits", [f.path, p2vm], config, result, level=1,
                               stage="reduce")
            result.products.append(l1)
            reduced.append((product, catg, f.path.stem, l1, f.mjd))

        self._calibrate(runner, config, reduced, files, dirs, work, out_dir, result)
        return result

    def _calibrate(self, runner, config, reduced, files, dirs, work, out_dir, result) -> None:
        """amber_trf + amber_calibrate when calibrator databases and calibrator observations exist."""
        databases = [(c.path, c.category) for c in files if c.category and c.category.startswith("CALIB_DATABASE")]
        cal = [(p, "CALIB_REDUCED") for p, c, *_ in reduced if c.startswith("CALIB_REDUCED")]
        sci = [(p, stem, l1, mjd) for p, c, stem, l1, mjd in reduced if c.startswith("SCIENCE_REDUCED")]
        if not databases or not cal or not sci:
            return
        # amber_trf names its products after its inputs' names (every SciCal product is amber_0000.fits):
        # give it copies named after their observation, with PBL13/PBL23 exchanged when fixing
        cal = [(trf_input(p, work / "trf_inputs" / f"{p.parent.name}_{p.name}", swap=self.fix_trf_baselines), tag)
               for p, tag in cal]
        sof = write_sof(cal + databases, work / "sof" / "trf.sof")
        try:
            trf = self.run_recipe(runner, config, "amber_trf", sof, dirs + sorted({p.parent for p, _ in cal}),
                                  work / "trf", result)
        except RecipeError as exc:
            result.failures.append(("transfer function (amber_trf)", str(exc)))
            return
        trfs = [(p, c, float(fits.getheader(p).get("MJD-OBS", 0.0) or 0.0)) for p, c in trf if c.startswith("AMBER_TRF")]
        for p, stem, l1, mjd in sci:
            name = f"calibrate_{stem}"
            # amber_calibrate uses one transfer function per band (the first in its SOF): give it the
            # one of the calibrator observed closest in time, per band
            nearest = {}
            for t, c, t_mjd in sorted(trfs, key=lambda item: abs(item[2] - mjd)):
                nearest.setdefault(c, t)
            used = [(t, c) for c, t in nearest.items()]
            sof = write_sof([(p, "SCIENCE_REDUCED")] + used, work / "sof" / f"{name}.sof")
            try:
                prods = self.run_recipe(runner, config, "amber_calibrate", sof, dirs + [p.parent, work / "trf"],
                                        work / name, result)
            except RecipeError as exc:
                result.failures.append((f"{stem} (calibration)", str(exc)))
                continue
            for q, c in prods:
                if c == "SCIENCE_CALIBRATED":
                    result.calibrated.append(self._publish(q, out_dir / f"{stem}_calibrated.fits",
                                                           [l1, *[t for t, _ in used]], config, result, level=2,
                                                           stage="calibrate"))

    def _publish(self, product: Path, dest: Path, inputs: list[Path], config: ReduceConfig, result: BackendResult,
                 *, level: int, stage: str) -> Path:
        """Copy an amdlib OIFITS to ``dest`` with oiflow's provenance in its primary header (L1:
        inputs raw file and P2VM; L2: the L1 product and the transfer functions)."""
        upstream = inputs[:1] if level == 2 else []  # L2: the L1 product (the others are transfer functions)
        prov = Provenance.for_inputs(level, stage, inputs, {"backend": "amdlib", **config.model_dump(mode="json")},
                                     stages=stage_history(upstream, stage, OK, "amdlib"))
        with fits.open(product) as hdul:
            hdul = fits.HDUList([h.copy() for h in hdul])
        prov.apply_to_header(hdul[0].header)
        last = result.runs[-1] if result.runs else {}
        hdul[0].header["HIERARCH OIFLOW ENGINE"] = str(last.get("engine", ""))
        if last.get("image"):
            hdul[0].header["HIERARCH OIFLOW IMAGE"] = str(last["image"])[:60]
        if last.get("image_id"):
            hdul[0].header["HIERARCH OIFLOW IMAGEID"] = str(last["image_id"])[:60]
        hdul[0].header["HIERARCH OIFLOW LOGSHA"] = str(last.get("log_sha256", ""))
        return write_hdulist_atomic(hdul, dest)


def trf_input(product: Path, dest: Path, *, swap: bool) -> Path:
    """A copy of an amdlib CALIB_REDUCED for amber_trf; with ``swap`` its ``ESO ISS PBL13``/``PBL23``
    (and PBLA) cards are exchanged (see the module docstring: what amber_trf 4.4.3 needs to pair
    lengths and baselines right). 2-telescope data (no PBL23) are copied unchanged."""
    with fits.open(product) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    h = hdul[0].header
    swapped = False
    for kind in ("PBL", "PBLA"):
        for when in ("START", "END"):
            k13, k23 = f"HIERARCH ESO ISS {kind}13 {when}", f"HIERARCH ESO ISS {kind}23 {when}"
            if swap and k13 in h and k23 in h:
                h[k13], h[k23] = h[k23], h[k13]
                swapped = True
    h["HIERARCH OIFLOW PBLSWAP"] = (swapped, "PBL13/PBL23 exchanged for amber_trf (oiflow)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return write_hdulist_atomic(hdul, dest)


class RecipeError(ReductionError):
    """An AMBER recipe failed: ``recipe``, the reason from its log, and the log file."""

    def __init__(self, recipe: str, message: str, log_path: Path):
        self.recipe = recipe
        self.log_path = log_path
        super().__init__(message)
