"""The AMBER raw-format writer: layout amdlib reads, and the fringe physics it encodes."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from oiflow.reduce.backends.amdlib import classify_dir
from oiflow.simulate.amber_raw import (IF_REGION, P2VM_FRAME_TYPES, REGIONS, AmberSetup, Pointing, _sexagesimal,
                                       frame_images, lamp_spectrum, object_frames, simulate_amber_night,
                                       sky_visibilities, write_calibrator_database, write_object, write_p2vm_set,
                                       write_static_calibrations)
from oiflow.site import get_site
from oiflow.simulate.night import NightConfig
from oiflow.simulate.sky import sky_visfunc


def test_p2vm_set_layout(tmp_path):
    setup = AmberSetup(nwave=16)
    paths = write_p2vm_set(tmp_path, setup, nframes=3)
    write_static_calibrations(tmp_path)
    types = [fits.getheader(p)["HIERARCH ESO OCS DET FRAM TYPE"] for p in paths]
    assert tuple(types) == P2VM_FRAME_TYPES
    cats = {f.path.name: f.category for f in classify_dir(tmp_path)}
    assert cats["amber_bpm.fits"] == "AMBER_BADPIX" and cats["amber_ffm.fits"] == "AMBER_FLATFIELD"
    assert all(cats[p.name] == "AMBER_3P2V" for p in paths)
    with fits.open(paths[4]) as hdul:
        assert any(k.startswith("ESO INS ") for k in hdul[0].header)  # else amdlib takes it for a P2VM product
        det, data, wave = hdul["IMAGING_DETECTOR"], hdul["IMAGING_DATA"], hdul["AMBER_WAVEDATA"]
        assert list(det.data["REGNAME"]) == ["DATA1", "DATA2", "DATA3", "DATA4", "DATA5"]
        assert all(name in data.columns.names for name in det.data["REGNAME"])
        assert data.data["DATA5"].shape == (3, 16, setup.nx) and data.data["DATA5"].dtype.kind == "i"
        assert wave.header["NWAVE"] == 512 and len(wave.data["EFF_WAVE"]) == 512
        rows = slice(setup.first_row - 1, setup.first_row - 1 + setup.nwave)
        np.testing.assert_allclose(wave.data["EFF_WAVE"][rows], setup.channel_wavelengths_nm())


def test_fringes_have_the_pair_frequency_and_visibility():
    setup = AmberSetup(nx=64, nwave=4, envelope_fwhm=1e6)  # flat envelope: clean Fourier peaks
    flux = lamp_spectrum(setup)
    flux[2] = 0.0
    mu = 0.6 * np.exp(1j * 0.4)
    img = frame_images(setup, flux, {"12": np.full(setup.nwave, mu)})[IF_REGION]
    inter = (1 - setup.kappa) * flux
    for c in range(setup.nwave):
        row = img[c]
        x = np.arange(setup.nx) - (setup.nx - 1) / 2
        f = setup.frequency("12")[c]
        # fit row = a + b cos + c sin at the carrier: (b - i c) / a = 2 sqrt(F1 F2)/(F1+F2) mu
        design = np.column_stack([np.ones_like(x), np.cos(2 * np.pi * f * x), np.sin(2 * np.pi * f * x)])
        a, b, c_ = np.linalg.lstsq(design, row, rcond=None)[0]
        coh = (b - 1j * c_) / a
        expected = 2 * np.sqrt(inter[0, c] * inter[1, c]) / (inter[0, c] + inter[1, c]) * abs(mu)
        assert abs(abs(coh) - expected) < 1e-9
        assert abs(np.angle(coh) - 0.4) < 1e-9


def test_regions_are_in_amdlib_order():
    # amdlib reads the 4th region as the interferometric channel (another order: visibilities ≈ 0)
    assert REGIONS == ("DARK", "P1", "P2", "IF", "P3") and IF_REGION == 3


def test_instrument_response_is_beam_based():
    setup = AmberSetup(beam_coherence=(0.9, 0.8, 0.7), beam_phase=(0.1, -0.3, 0.5))
    vis, phase = setup.instrument_vis, setup.instrument_phase
    assert vis["12"] == pytest.approx(np.sqrt(0.72)) and vis["13"] == pytest.approx(np.sqrt(0.63))
    assert phase["12"] + phase["23"] - phase["13"] == pytest.approx(0.0)  # no instrumental closure phase


def test_object_frames_never_have_negative_light():
    """Coherences from a real sky × beam-based instrument × pistons: a positive coherence matrix,
    so the noise-free interferogram is ≥ 0 everywhere (with an unphysical set of pair coherences it
    goes negative at some fringe phases and amdlib's V² drops by up to 13% on those frames: how
    this was found)."""
    setup = AmberSetup(nwave=8)
    site = get_site("VLTI")
    pointing = Pointing(site, ["A0", "G1", "K0"], 124.0, -38.0, 60020.2)
    model = {"type": "binary", "flux_ratio": 0.9, "separation_mas": 7.0, "pa_deg": 30.0}
    sky = sky_visibilities(sky_visfunc(model), pointing.uv(), setup)
    rng = np.random.default_rng(3)
    frames = object_frames(setup, sky, lamp_spectrum(setup, 1e4), 50, rng, noise=False)
    lowest = min(float(f[IF_REGION].min()) for f in frames)
    assert lowest >= setup.bias - 0.5  # counts = bias + electrons (rounded)


def test_sexagesimal_packing():
    assert _sexagesimal(124.0, hours=True) == pytest.approx(81600.0)  # 8h16m00s
    assert _sexagesimal(-38.5, hours=False) == pytest.approx(-383000.0)  # -38°30'00"
    assert _sexagesimal(118.0 + 15 / 3600, hours=True) == pytest.approx(75201.0)  # 7h52m01s


def test_object_file_geometry_cards(tmp_path):
    setup = AmberSetup(nwave=8)
    site = get_site("VLTI")
    pointing = Pointing(site, ["A0", "G1", "K0"], 124.0, -38.0, 60020.2)
    path = write_object(tmp_path / "obj.fits", setup, sky_visfunc({"type": "point"}), pointing, nframes=2,
                        category="CALIB", target="STAR")
    with fits.open(path) as hdul:
        h = hdul[0].header
        assert (h["HIERARCH ESO DPR CATG"], h["HIERARCH ESO DPR TYPE"]) == ("CALIB", "OBJECT")
        enu = site.enu(["A0", "G1", "K0"])
        for k, name in enumerate(["A0", "G1", "K0"]):
            assert h[f"HIERARCH ESO ISS CONF STATION{k + 1}"] == name
            assert [h[f"HIERARCH ESO ISS CONF T{k + 1}{a}"] for a in "XYZ"] == pytest.approx(list(enu[k]))
        uv = pointing.uv()
        for pair in ("12", "23", "13"):
            assert h[f"HIERARCH ESO ISS PBL{pair} START"] == pytest.approx(np.hypot(*uv[pair]))
        # LST − RA is the hour angle the (u, v) was projected with
        ha = (h["LST"] / 86400 * 360 - h["RA"] + 180) % 360 - 180
        assert np.radians(ha) == pytest.approx(pointing.hour_angle(), abs=1e-9)
        assert list(hdul["ARRAY_GEOMETRY"].data["STA_NAME"]) == ["A0", "G1", "K0"]
        assert [x.name for x in hdul] == ["PRIMARY", "IMAGING_DETECTOR", "ARRAY_GEOMETRY", "IMAGING_DATA",
                                          "AMBER_WAVEDATA"]


def test_calibrator_database_layout(tmp_path):
    path = write_calibrator_database(tmp_path / "db.fits", {"HD1": (118.0 + 15 / 3600, -35.5, 1.2, 0.06)})
    assert classify_dir(tmp_path)[0].category == "CALIB_DATABASE_K"
    row = fits.getdata(path, "CALIBRATOR_DATA")[0]
    assert (row["hourRA"], row["minuteRA"], row["secondRA"]) == (7, 52, pytest.approx(1.0))
    assert (row["signDEC"], row["degreeDEC"], row["minuteDEC"], row["secondDEC"]) == (-1, 35, 30, pytest.approx(0.0))
    assert (row["diameter"], row["diameterErr"]) == (1.2, 0.06)


def test_simulated_night_files_and_truth(tmp_path):
    cfg = NightConfig.validate_dict({
        "night": "2023-03-15", "seed": 2, "array": "large", "instrument": {"n_frames": 3},
        "targets": {"CAL": {"ra_deg": 118.0, "dec_deg": -35.0, "category": "CAL",
                            "model": {"type": "uniform_disk", "diameter_mas": 0.8}},
                    "SCI": {"ra_deg": 124.0, "dec_deg": -38.0,
                            "model": {"type": "binary", "flux_ratio": 0.3, "separation_mas": 4.5, "pa_deg": 60.0}}},
        "sequence": {"order": ["CAL", "SCI"]}})
    truth = simulate_amber_night(cfg, tmp_path, AmberSetup(nwave=8), p2vm_frames=2)
    assert truth["stations"] == ["A0", "G1", "J2"]  # the first three of the 'large' quadruplet
    cats = {f.path.name: f.category for f in classify_dir(tmp_path)}
    assert sorted(cats.values()).count("AMBER_3P2V") == 10
    assert cats["AMBER.OBS001_CAL.fits"] == "AMBER_CALIB" and cats["AMBER.OBS002_SCI.fits"] == "AMBER_SCIENCE"
    assert cats["AMBER.CALIB_DATABASE_K.fits"] == "CALIB_DATABASE_K"
    assert truth["calibrator_database"] == {"CAL": [118.0, -35.0, 0.8, pytest.approx(0.04)]}
    sci = truth["observations"][1]
    assert np.shape(sci["vis2_sky"]) == (3, 8) and np.shape(sci["t3phi_sky_deg"]) == (1, 8)
    # truth (u, v) = (r_j − r_i) projected, as oiflow.simulate.geometry.uv_coverage gives
    from oiflow.simulate.geometry import uv_coverage
    from oiflow.site import resolve_stations

    site, _ = resolve_stations("large")
    cov = uv_coverage(site, ["A0", "G1", "J2"], np.radians(124.0), np.radians(-38.0), sci["mjd_mid"])
    np.testing.assert_allclose(sci["u"], cov.u[0], atol=1e-6)
    np.testing.assert_allclose(sci["v"], cov.v[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(sci["tf_vis2"])[:, 0], [0.95 * 0.85, 0.95 * 0.9, 0.85 * 0.9])
