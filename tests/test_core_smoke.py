"""Smoke tests of the core layout: conventions, provenance, backends."""

import numpy as np
import pytest

from oiflow.backend import get_xp, to_numpy
from oiflow.errors import ConfigError
from oiflow.fit.analytic import shift_phasor, uniform_disk
from oiflow.image.transform import dft
from oiflow.provenance import Provenance, atomic_path


def test_dft_matches_shift_sign_convention():
    """A pixel 2 px East of centre has V = exp(-2πi u x) with x > 0 (OIFITS convention)."""
    xp = get_xp("numpy")
    img = np.zeros((64, 64))
    img[32, 30] = 1.0  # East is left: ix = 30 is 2 px East of the centre pixel 32
    pix = 1e-9
    u = np.array([1e7, 3e7])
    v = np.array([2e7, -1e7])
    np.testing.assert_allclose(dft(img, pix, u, v, xp), shift_phasor(u, v, 2 * pix, 0.0, xp), atol=1e-12)


def test_uniform_disk_first_null_and_strict_backend():
    from scipy.special import j1

    theta = 8.0e-9
    rho = np.linspace(1e5, 2e8, 200)
    x = np.pi * theta * rho
    expected = 2 * j1(x) / x
    np.testing.assert_allclose(uniform_disk(rho, 0 * rho, theta, get_xp("numpy")).real, expected, atol=1e-12)
    xs = get_xp("array_api_strict")
    got = to_numpy(uniform_disk(xs.asarray(rho), xs.asarray(0 * rho), theta, xs))
    np.testing.assert_allclose(got.real, expected, atol=1e-7)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "product.fits"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_provenance_round_trip_through_header(tmp_path):
    from astropy.io import fits

    src = tmp_path / "in.txt"
    src.write_text("x")
    prov = Provenance.for_inputs(2, "calibrate", [src], settings={"window_h": 0.8, "mode": "smooth"})
    h = fits.Header()
    prov.apply_to_header(h)
    back = Provenance.from_header(h)
    assert back.level == 2 and back.stage == "calibrate"
    assert back.settings == {"window_h": 0.8, "mode": "smooth"}
    assert back.inputs[0].sha256 == prov.inputs[0].sha256
    assert back.settings_hash == prov.settings_hash


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError):
        get_xp("tensorflow")


def test_atomic_products_get_the_usual_file_mode(tmp_path):
    from oiflow.provenance import _UMASK, write_text_atomic

    path = write_text_atomic("x", tmp_path / "p.json")
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_UMASK != 0o600
