"""The AMBER raw-format writer: layout amdlib reads, and the fringe physics it encodes."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from oiflow.reduce.backends.amdlib import classify_dir
from oiflow.simulate.amber_raw import (IF_REGION, P2VM_FRAME_TYPES, AmberSetup, frame_images, lamp_spectrum, write_p2vm_set,
                                       write_static_calibrations)


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
    kappa = np.asarray(setup.kappa)[:, None]
    inter = (1 - kappa) * flux
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
