"""OIFITS commands: validate, inspect, plot, merge, select, quicklook.

Machine-readable output (``--json``) goes to stdout, progress and diagnostics to stderr.
Exit codes: 0 success; 1 some file has validation errors (or a command's own failure);
2 some input is unreadable or the usage is wrong. validate, inspect and quicklook report on
every file they are given (a file that cannot be opened: one line on stderr, exit 2); the
others check their paths first (:mod:`.paths`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError, OIFitsError, OIFitsWarning
from ..oifits import read_oifits, write_oifits
from ..oifits.findings import Severity
from ..provenance import Provenance, write_json_atomic
from . import paths
from .json_output import emit_json, force_option, json_out_option

_err = Console(stderr=True)
_SUFFIXES = (".fits", ".oifits", ".fit", ".fits.gz", ".oifits.gz")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    app.command("inspect")(inspect)
    app.command("plot")(plot)
    app.command("merge")(merge)
    app.command("select")(select)
    app.command("quicklook")(quicklook)


@contextmanager
def _progress(total: int, label: str):
    """A rich progress bar on stderr for multi-file commands (silent for one file)."""
    if total <= 1:
        yield lambda name: None
        return
    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[name]}"), console=_err, transient=True)
    with prog:
        task = prog.add_task(label, total=total, name="")

        def advance(name: str) -> None:
            prog.update(task, advance=1, name=name)

        yield advance


def _read(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OIFitsWarning)
        return read_oifits(path, warn=False)


def _say_unreadable(file, error: str) -> None:
    """The one line of a file that could not be read, on stderr."""
    typer.echo(f"{file}: UNREADABLE — {error}", err=True)


# ----------------------------------------------------------------------------------------------
def validate_cmd(
    files: list[Path] = typer.Argument(..., help="OIFITS files to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report per file (a list) on stdout."),
    json_out: Path | None = json_out_option("the JSON reports"),
    force: bool = force_option(),
    show_all: bool = typer.Option(False, "--all", help="Also list info-level findings."),
    max_findings: int = typer.Option(30, "--max", help="Findings listed per file and severity (text output)."),
):
    """Check OIFITS files against the OIFITS1/OIFITS2 standard (JMMC rule names).

    Exit status: 0 no errors, 1 some file has errors, 2 some file is unreadable.

    Example: oiflow validate data/*.fits --json > report.json
    """
    from ..oifits.validate import validate

    if json_out is not None:
        paths.output_file(json_out, force=force, inputs=files, label="--json-out")
    reports, status = [], 0
    with _progress(len(files), "validate") as advance:
        for f in files:
            try:
                rep = validate(f)  # every rule that applies, also to a file the reader refuses
            except OIFitsError as exc:  # cannot be opened at all (missing, a directory)
                reports.append({"file": str(f), "verdict": "unreadable", "error": str(exc), "findings": []})
                _say_unreadable(f, str(exc))
                status = 2
            else:
                reports.append(rep.to_dict())
                if rep.unreadable:
                    reports[-1]["error"] = rep.unreadable
                    status = 2
                elif rep.errors:
                    status = max(status, 1)
            advance(f.name)
    emit_json(reports, as_json, json_out)
    if not as_json:
        for rep in reports:
            _print_report(rep, show_all, max_findings)
        n_bad = sum(1 for r in reports if r["verdict"] == "non-conformant")
        n_unr = sum(1 for r in reports if r["verdict"] == "unreadable")
        if len(reports) > 1:
            typer.echo(f"{len(reports)} files: {len(reports) - n_bad - n_unr} conform, {n_bad} non-conformant, "
                       f"{n_unr} unreadable")
    raise typer.Exit(status)


def _print_report(rep: dict, show_all: bool, max_findings: int) -> None:
    if rep["verdict"] == "unreadable":
        if not rep["findings"]:  # said on stderr already
            return
        typer.echo(f"{rep['file']}: UNREADABLE — {rep['error']}")
    else:
        typer.echo(f"{rep['file']}: {rep['verdict']} (OIFITS{rep['version']}; {rep['errors']} errors, "
                   f"{rep['warnings']} warnings, {rep['infos']} infos)")
    levels = [Severity.ERROR.value, Severity.WARNING.value] + ([Severity.INFO.value] if show_all else [])
    for level in levels:
        items = [f for f in rep["findings"] if f["severity"] == level]
        for f in items[:max_findings]:
            where = " ".join(str(x) for x in (f["hdu"], f.get("card") and f"card {f['card']}", f["column"]) if x)
            rows = f" rows {','.join(str(r) for r in f['rows'][:6])}{'…' if len(f['rows']) > 6 else ''}" if f["rows"] else ""
            typer.echo(f"  {level.upper():7s} {f['rule']:32s} {where}{rows}: {f['message']}")
        if len(items) > max_findings:
            typer.echo(f"  … {len(items) - max_findings} more {level}s (use --json for all)")


# ----------------------------------------------------------------------------------------------
def inspect(
    files: list[Path] = typer.Argument(..., help="OIFITS files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list, one object per file) on stdout."),
    json_out: Path | None = json_out_option("the JSON list"),
    force: bool = force_option(),
):
    """Summarise OIFITS files: targets, instruments and modes (INSNAME, channels, λ range), nights,
    counts per observable (points = rows × channels; ok = unflagged and finite), baselines.

    Example: oiflow inspect data/AXCir.oifits --json
    """
    from ..oifits.summary import summarize

    if json_out is not None:
        paths.output_file(json_out, force=force, inputs=files, label="--json-out")
    out, status = [], 0
    with _progress(len(files), "inspect") as advance:
        for f in files:
            try:
                info = summarize(_read(f))
                info["file"] = str(f)
                out.append(info)
            except OIFitsError as exc:
                out.append({"file": str(f), "error": str(exc)})
                _say_unreadable(f, str(exc))
                status = 2
            advance(f.name)
    emit_json(out, as_json, json_out)
    if not as_json:
        for info in out:
            _print_summary(info)
    raise typer.Exit(status)


def _print_summary(info: dict) -> None:
    if "error" in info:  # said on stderr already
        return
    typer.echo(f"{info['file']}  (OIFITS{info['version']}; {info.get('instrument') or '?'}"
               f"{' / ' + info['insmode'] if info.get('insmode') else ''})")
    tg = ", ".join(f"{t['name']} (id {t['id']})" for t in info["targets"])
    typer.echo(f"  targets   : {tg}")
    for ins in info["instruments"]:
        typer.echo(f"  insname   : {ins['insname']}: {ins['nwave']} channels, "
                   f"{ins['wave_min_um']:.4f}–{ins['wave_max_um']:.4f} µm"
                   + (f", R≈{ins['resolution']:.0f}" if ins.get("resolution") else ""))
    typer.echo(f"  nights    : {', '.join(info['nights']) or '-'}")
    c = info["counts"]
    typer.echo("  counts    : " + "; ".join(f"{k.upper()} {v['points']} points ({v['ok']} ok) in {v['rows']} rows"
                                          for k, v in c.items() if v["points"]))
    if info.get("baseline_range_m"):
        lo, hi = info["baseline_range_m"]
        typer.echo(f"  baselines : {len(info['baselines'])} ({lo:.1f}–{hi:.1f} m): "
                   + ", ".join(f"{k} {v['max_m']:.1f} m" for k, v in list(info["baselines"].items())[:12]))


# ----------------------------------------------------------------------------------------------
def plot(
    file: Path = typer.Argument(..., help="OIFITS file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the PNG files (created; files of the "
                             "same names in it are replaced)."),
    dpi: int = typer.Option(120, help="Resolution of the PNGs."),
):
    """Quicklook plots: uv coverage, V² vs spatial frequency, closure phases, VISAMP/VISPHI, OI_FLUX.

    Example: oiflow plot data/AXCir.oifits --out plots/
    """
    from ..oifits.plot import quicklook as make_plots

    paths.input_file(file)
    paths.output_dir(out)
    pngs = make_plots(_read(file), out, dpi=dpi)
    for name, p in pngs.items():
        typer.echo(f"{name}: {p}")
    if not pngs:
        _err.print(f"{file}: nothing to plot")
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------------
def _level_of(ois) -> int:
    levels = {int(o.primary_header["CALIB_LV"]) for o in ois if str(o.primary_header.get("CALIB_LV", "")).isdigit()}
    return min(levels) if levels else 2


def merge(
    files: list[Path] = typer.Argument(..., help="Input OIFITS files (two or more)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output OIFITS file (an existing one is replaced only with "
                             "--force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    version: int = typer.Option(2, "--version", help="OIFITS version to write (1 or 2)."),
):
    """Merge OIFITS files: targets re-indexed by name/position; clashing ARRNAME/INSNAME/CORRNAME renamed.

    Example: oiflow merge obs1.fits obs2.fits obs3.fits --out night.fits
    """
    from ..oifits.ops import merge as merge_ois

    paths.input_files(files)
    paths.output_file(out, force=force, inputs=files)
    ois = []
    with _progress(len(files), "read") as advance:
        for f in files:
            ois.append(_read(f))
            advance(f.name)
    merged = merge_ois(ois)
    prov = Provenance.for_inputs(_level_of(ois), "merge", files, settings={"version": version})
    write_oifits(merged, out, version=version, provenance=prov)
    typer.echo(f"wrote {out}: {len(merged.target_names())} targets, {len(merged.data_tables)} data tables "
               f"from {len(files)} files")


def select(
    src: Path = typer.Argument(..., metavar="IN", help="Input OIFITS file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output OIFITS file (an existing one is replaced only with "
                             "--force)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    target: list[str] = typer.Option(None, "--target", help="Target name or TARGET_ID (repeatable)."),
    insname: list[str] = typer.Option(None, "--insname", help="INSNAME to keep (repeatable)."),
    wave_min: float = typer.Option(None, "--wave-min", help="Shortest wavelength kept (µm)."),
    wave_max: float = typer.Option(None, "--wave-max", help="Longest wavelength kept (µm)."),
    mjd_min: float = typer.Option(None, "--mjd-min", help="Earliest MJD kept."),
    mjd_max: float = typer.Option(None, "--mjd-max", help="Latest MJD kept."),
    baseline_min: float = typer.Option(None, "--baseline-min", help="Shortest projected baseline kept (m)."),
    baseline_max: float = typer.Option(None, "--baseline-max", help="Longest projected baseline kept (m)."),
    drop_flagged: bool = typer.Option(False, "--drop-flagged", help="Remove rows whose channels are all flagged."),
    min_snr: float = typer.Option(None, "--min-snr", help="Flag points with a lower signal-to-noise ratio."),
    version: int = typer.Option(2, "--version", help="OIFITS version to write (1 or 2)."),
):
    """Write a subset of a file: targets, instruments, wavelength range (new OI_WAVELENGTH), MJD range,
    baseline range, flags, minimum SNR.

    Example: oiflow select in.fits --out out.fits --target HD_45677 --wave-min 1.6 --wave-max 1.7 --min-snr 3
    """
    from ..oifits.ops import select as select_oi

    paths.input_file(src)
    paths.output_file(out, force=force, inputs=[src])
    oi = _read(src)
    settings = {"target": target or None, "insname": insname or None, "wave_min_um": wave_min, "wave_max_um": wave_max,
                "mjd_min": mjd_min, "mjd_max": mjd_max, "baseline_min_m": baseline_min, "baseline_max_m": baseline_max,
                "drop_flagged": drop_flagged, "min_snr": min_snr}
    sub = select_oi(oi, target=target or None, insname=insname or None,  # a DataError (nothing left): exit 1
                    wave_min=None if wave_min is None else wave_min * 1e-6,
                    wave_max=None if wave_max is None else wave_max * 1e-6,
                    mjd_min=mjd_min, mjd_max=mjd_max, baseline_min=baseline_min, baseline_max=baseline_max,
                    drop_flagged=drop_flagged, min_snr=min_snr)
    prov = Provenance.for_inputs(_level_of([oi]), "select", [src], settings={k: v for k, v in settings.items() if v})
    write_oifits(sub, out, version=version, provenance=prov)
    counts = {k: len(sub.view(k)) for k in ("vis2", "t3", "vis", "flux")}
    typer.echo(f"wrote {out}: " + ", ".join(f"{k.upper()} {n} points" for k, n in counts.items() if n))


# ----------------------------------------------------------------------------------------------
def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _expand(paths: list[Path]) -> list[Path]:
    files = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(_SUFFIXES)))
        else:
            files.append(p)
    return files


def quicklook(
    inputs: list[Path] = typer.Argument(..., metavar="PATHS", help="OIFITS files or directories (searched "
                                        "recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: <stem>/ plots + validation.json, "
                             "summary.json (created; files of the same names in it are replaced)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary JSON on stdout."),
):
    """Validate, inspect and plot every OIFITS file found: the quicklook products of a data set.

    Writes OUT/<file stem>/{*.png, validation.json, inspect.json} and OUT/summary.json.
    Exit status: 0 all conform, 1 some file has validation errors, 2 some file is unreadable.

    Example: oiflow quicklook data-samples --out products/quicklook
    """
    from ..oifits.plot import quicklook as make_plots
    from ..oifits.summary import summarize
    from ..oifits.validate import validate

    for p in inputs:
        paths.input_path(p)
    paths.output_dir(out)
    files = _expand(inputs)
    if not files:
        raise ConfigError(f"no OIFITS files (*{', *'.join(_SUFFIXES)}) under {', '.join(str(p) for p in inputs)}")
    rows, status = [], 0
    with _progress(len(files), "quicklook") as advance:
        for f in files:
            item = {"file": str(f)}
            try:
                oi = _read(f)
                rep = validate(oi)
                info = summarize(oi)
                info["file"] = str(f)
                d = out / _stem(f)
                write_json_atomic(rep.to_dict(), d / "validation.json")
                write_json_atomic(info, d / "inspect.json")
                item.update(verdict=rep.verdict, errors=len(rep.errors), warnings=len(rep.warnings),
                            targets=[t["name"] for t in info["targets"]], counts=info["counts"],
                            plots=make_plots(oi, d))
                if rep.errors:
                    status = max(status, 1)
            except OIFitsError as exc:
                item.update(verdict="unreadable", error=str(exc))
                status = 2
            rows.append(item)
            advance(f.name)
    write_json_atomic({"files": rows}, out / "summary.json")
    emit_json(rows, as_json, None)
    if not as_json:
        for r in rows:
            if r["verdict"] == "unreadable":
                _say_unreadable(r["file"], r["error"])
                continue
            typer.echo(f"{r['file']}: {r['verdict']} ({r['errors']} errors, {r['warnings']} warnings); "
                       f"{', '.join(r['targets'])}; {len(r['plots'])} plots")
        typer.echo(f"summary: {out / 'summary.json'}")
    raise typer.Exit(status)
