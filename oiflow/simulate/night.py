"""A simulated observing night: interleaved CAL–SCI–CAL sequences written as raw files (L0).

    cfg = NightConfig.from_yaml("configs/night-demo.yaml")
    truth = simulate_night(cfg, "data-samples/night-sim")      # raw FITS + truth.json

The night directory holds one raw file per exposure (layout: :mod:`oiflow.simulate.raw_layout`):
a calibration set taken at the start (1 DARK, 4 FLAT, 6 P2VM) and one OBJECT file per
observation of the sequence. ``truth.json`` records the configuration, the true instrument
response per observation (instrumental visibility per baseline and channel), the (u, v) at
mid-exposure, and the true sky and expected raw (uncalibrated) V² and closure phases, so that
tests can compare what the reducer and the calibrator recover.

Instrumental (sky-path) visibility of baseline b, channel c at time t::

    V_inst = A_b(c) · (1 + drift · (t − t_mid)/1 h) · (1 + jitter · N(0, 1)) · exp(i δ_b(c))

A_b scatters around ``tf_visibility`` by ``tf_spread``; δ_b has a non-zero closure of about
``closure_offset_deg`` (the instrumental closure phase that calibration removes). Everything is
deterministic under ``seed``.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import load_yaml, validate
from ..errors import ConfigError
from ..observables import baselines, closure_phase, triangle_baselines, triangles
from ..product_tree import safe_name
from ..provenance import write_json_atomic, write_text_atomic
from ..site import night_of, resolve_stations
from .frames import Combiner, dark_exposure, flat_exposure, object_exposure, p2vm_exposure
from .geometry import uv_coverage
from .raw_writer import write_raw
from .sky import model_visibilities, uniform_disk_diameter_mas


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstrumentSpec(_M):
    name: str = "SIMABCD"
    mode: str = "H-6CH"
    wavelength_min_um: float = 1.55
    wavelength_max_um: float = 1.80
    n_channels: int = 6
    dit_s: float = 0.02
    n_frames: int = 40  # frames per OBJECT exposure
    n_calib_frames: int = 40  # frames per DARK / FLAT exposure
    n_scan_frames: int = 64  # frames per P2VM (two-beam scan) exposure
    read_noise: float = 5.0  # e-
    dark_level: float = 20.0  # e- per frame and pixel
    bias: float = 200.0
    flux_per_frame: float = 4000.0  # e- per telescope, channel and frame for a star of flux 1
    telescope_throughput: list[float] = Field(default_factory=lambda: [1.0, 0.9, 1.1, 0.95])
    lamp_flux: float = 50000.0  # e- per beam, channel and frame of the internal lamp
    imperfect: bool = True  # perturb the V2PM away from the ideal ABCD
    phase_rms_deg: float = 10.0
    transmission_rms: float = 0.1

    @property
    def wavelengths(self) -> np.ndarray:
        return np.linspace(self.wavelength_min_um, self.wavelength_max_um, self.n_channels) * 1e-6


class ConditionsSpec(_M):
    tf_visibility: float = 0.85
    tf_spread: float = 0.04
    drift_per_hour: float = -0.02
    jitter: float = 0.003  # per observation and baseline, relative
    closure_offset_deg: float = 3.0
    injection_rms: float = 0.25
    piston_rms_um: float = 5.0


class TargetSpec(_M):
    ra_deg: float
    dec_deg: float
    category: Literal["SCI", "CAL"] = "SCI"
    model: dict[str, Any] = Field(default_factory=lambda: {"type": "point"})
    flux: float = 1.0
    diameter_error_mas: float | None = None  # calibrators: catalogue error of the UD diameter


class SequenceSpec(_M):
    start_ut_h: float = 24.5  # hours after 0h UT of the night date (24.5 = 00:30 UT next day)
    slot_min: float = 12.0
    order: list[str]


class NightConfig(_M):
    night: date
    seed: int = 1
    facility: str = "VLTI"
    array: str | list[str] = "large"
    instrument: InstrumentSpec = Field(default_factory=InstrumentSpec)
    conditions: ConditionsSpec = Field(default_factory=ConditionsSpec)
    targets: dict[str, TargetSpec]
    sequence: SequenceSpec

    @field_validator("targets")
    @classmethod
    def _names(cls, v):
        for name in v:
            if safe_name(name) != name:  # the names go into file names unchanged
                raise ValueError(f"target name {name!r}: use letters, digits and _ . + - only")
        return v

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> "NightConfig":
        data = load_yaml(path)
        if overrides:
            data.update(overrides)
        return cls.validate_dict(data, str(path))

    @classmethod
    def validate_dict(cls, data: dict, where: str = "night configuration") -> "NightConfig":
        cfg = validate(cls, data, where)
        unknown = [t for t in cfg.sequence.order if t not in cfg.targets]
        if unknown:
            raise ConfigError(f"{where}: sequence names unknown targets: {', '.join(unknown)}")
        cfg._check_night(where)
        return cfg

    def _check_night(self, where: str) -> None:
        """The observations must belong to ``night`` at the site (:func:`oiflow.site.night_of`),
        the night the reducer, the catalogue and the product tree will give them."""
        site, _ = resolve_stations(self.array, self.facility)
        seq = self.sequence
        t0 = _mjd_of(self.night) + seq.start_ut_h / 24.0
        t1 = t0 + len(seq.order) * seq.slot_min / 1440.0
        got = sorted({night_of(t, site.longitude_deg) for t in (t0, t1)})
        if got != [self.night.isoformat()]:
            span = f"span the nights {' and '.join(got)}" if len(got) > 1 else f"fall in night {got[0]}"
            raise ConfigError(f"{where}: sequence: start_ut_h {seq.start_ut_h:g} and {len(seq.order)} slots of "
                              f"{seq.slot_min:g} min {span} at {site.name} (longitude {site.longitude_deg:.2f}°), "
                              f"not in night {self.night.isoformat()} alone")


def _mjd_of(d: date) -> float:
    return (datetime(d.year, d.month, d.day, tzinfo=timezone.utc) - datetime(1858, 11, 17, tzinfo=timezone.utc)).days + 0.0


def instrument_response(cfg: NightConfig, wave: np.ndarray, rng: np.random.Generator):
    """Static part of the instrumental visibility: amplitudes A (6, C) and phases δ (6, C)."""
    c = cfg.conditions
    x = (wave - wave.mean()) / max(np.ptp(wave), 1e-30)
    amp = c.tf_visibility * (1.0 + c.tf_spread * rng.standard_normal((6, 1))) * (1.0 - 0.05 * x[None, :] ** 2)
    amp = np.clip(amp, 0.05, 1.0)
    # phases with a non-zero closure: random per baseline (not telescope-separable)
    delta = np.deg2rad(c.closure_offset_deg) * (rng.standard_normal((6, 1)) + 0.5 * rng.standard_normal((6, 1)) * x)
    return amp, delta


def simulate_night(cfg: NightConfig, out_dir: str | Path) -> dict:
    """Write the raw files of the night and truth.json into ``out_dir``; return the truth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    site, stations = resolve_stations(cfg.array, cfg.facility)
    if len(stations) != 4:
        raise ConfigError(f"the ABCD simulator combines 4 telescopes; got stations {stations}")
    ins = cfg.instrument
    wave = ins.wavelengths
    combiner = Combiner.ideal(wave, name=ins.name, mode=ins.mode, read_noise=ins.read_noise,
                              dark_level=ins.dark_level, bias=ins.bias)
    if ins.imperfect:
        combiner = combiner.perturbed(rng, transmission_rms=ins.transmission_rms, phase_rms_deg=ins.phase_rms_deg)
    amp0, delta = instrument_response(cfg, wave, rng)
    mjd_night = _mjd_of(cfg.night)
    t_start = mjd_night + cfg.sequence.start_ut_h / 24.0
    slot = cfg.sequence.slot_min / 1440.0
    n_obs = len(cfg.sequence.order)
    t_mid_night = t_start + 0.5 * n_obs * slot
    common = dict(site=site, stations=stations)
    files: list[str] = []
    # calibration set at the start of the night (taken in the afternoon: before t_start)
    t_cal = t_start - 0.1
    exp = dark_exposure(combiner, ins.n_calib_frames, ins.dit_s, t_cal, rng)
    files.append(write_raw(exp, combiner, out / f"{ins.name}_{safe_name(ins.mode)}_DARK.fits", obs_id=0, **common).name)
    for beam in range(4):
        exp = flat_exposure(combiner, beam, ins.n_calib_frames, ins.dit_s, t_cal + (beam + 1) / 1440.0, rng,
                            lamp_flux=ins.lamp_flux)
        files.append(write_raw(exp, combiner, out / f"{ins.name}_{safe_name(ins.mode)}_FLAT_T{beam + 1}.fits", obs_id=0,
                               **common).name)
    for b, (i, j) in enumerate(baselines(4)):
        exp = p2vm_exposure(combiner, (i, j), ins.n_scan_frames, ins.dit_s, t_cal + (b + 5) / 1440.0, rng,
                            lamp_flux=ins.lamp_flux)
        files.append(write_raw(exp, combiner, out / f"{ins.name}_{safe_name(ins.mode)}_P2VM_{i + 1}{j + 1}.fits",
                               obs_id=0, **common).name)
    throughput = np.asarray(ins.telescope_throughput, float).reshape(4, 1)
    tri = triangles(4)
    tb = triangle_baselines(4)
    observations = []
    for k, name in enumerate(cfg.sequence.order):
        tgt = cfg.targets[name]
        mjd0 = t_start + k * slot
        mjd_mid = mjd0 + 0.5 * ins.n_frames * ins.dit_s / 86400.0
        cov = uv_coverage(site, stations, math.radians(tgt.ra_deg), math.radians(tgt.dec_deg), mjd_mid)
        v_sky = model_visibilities(tgt.model, cov.u[0], cov.v[0], wave)  # (6, C)
        drift = 1.0 + cfg.conditions.drift_per_hour * (mjd_mid - t_mid_night) * 24.0
        jit = 1.0 + cfg.conditions.jitter * rng.standard_normal((6, 1))
        v_inst = amp0 * drift * jit * np.exp(1j * delta)
        flux = ins.flux_per_frame * tgt.flux * throughput * np.ones((1, wave.size))
        exp = object_exposure(combiner, v_sky * v_inst, flux, ins.n_frames, ins.dit_s, mjd0, rng,
                              injection_rms=cfg.conditions.injection_rms,
                              piston_rms_m=cfg.conditions.piston_rms_um * 1e-6)
        fname = f"{ins.name}_OBS{k + 1:03d}_{safe_name(name)}.fits"
        write_raw(exp, combiner, out / fname, obs_id=k + 1, target=name, ra_deg=tgt.ra_deg, dec_deg=tgt.dec_deg,
                  category=tgt.category, **common)
        files.append(fname)
        v_tot = v_sky * v_inst
        cp_sky = np.asarray([closure_phase(v_sky[a], v_sky[b], v_sky[c], np) for a, b, c in tb])
        cp_raw = np.asarray([closure_phase(v_tot[a], v_tot[b], v_tot[c], np) for a, b, c in tb])
        observations.append({
            "obs_id": Path(fname).stem, "file": fname, "target": name, "category": tgt.category,
            "mjd_mid": mjd_mid, "altitude_deg": float(np.degrees(cov.altitude[0])),
            "u": cov.u[0].tolist(), "v": cov.v[0].tolist(),
            "vis2_sky": (np.abs(v_sky) ** 2).tolist(), "vis2_raw": (np.abs(v_tot) ** 2).tolist(),
            "t3phi_sky_deg": np.degrees(cp_sky).tolist(), "t3phi_raw_deg": np.degrees(cp_raw).tolist(),
            "tf_vis2": (np.abs(v_inst) ** 2).tolist(),
        })
    truth = {
        "night": cfg.night.isoformat(), "seed": cfg.seed, "facility": site.name, "stations": stations,
        "mode": ins.mode, "instrument": ins.name, "wavelength": wave.tolist(),
        "baselines": [[i + 1, j + 1] for i, j in baselines(4)],
        "triangles": [[i + 1, j + 1, k + 1] for i, j, k in tri],
        "targets": {n: {"category": t.category, "ra_deg": t.ra_deg, "dec_deg": t.dec_deg, "model": t.model,
                        "flux": t.flux, "diameter_error_mas": t.diameter_error_mas} for n, t in cfg.targets.items()},
        "observations": observations,
        "files": files,
        "config": cfg.model_dump(mode="json"),
    }
    write_json_atomic(truth, out / "truth.json")
    return truth


def calibrator_catalogue_csv(cfg: NightConfig, band: str = "H", default_error_frac: float = 0.05) -> str:
    """A calibrator catalogue (CSV, the format :mod:`oiflow.calibrate.diameters` reads) listing
    the night's calibrators with their true UD diameters and the configured errors."""
    lines = [f"name,ra_deg,dec_deg,ud_{band.lower()}_mas,e_ud_{band.lower()}_mas"]
    for name, t in cfg.targets.items():
        if t.category != "CAL":
            continue
        d = uniform_disk_diameter_mas(t.model)
        if d is None:
            continue
        err = t.diameter_error_mas if t.diameter_error_mas is not None else default_error_frac * d
        lines.append(f"{name},{t.ra_deg:.6f},{t.dec_deg:.6f},{d:.4f},{err:.4f}")
    return "\n".join(lines) + "\n"


def write_calibrator_catalogue(cfg: NightConfig, path: str | Path, band: str = "H") -> Path:
    return write_text_atomic(calibrator_catalogue_csv(cfg, band), path)
