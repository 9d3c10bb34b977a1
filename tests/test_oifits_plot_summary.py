"""Quicklook plots and the inspect summary."""

from __future__ import annotations

import warnings

import numpy as np

from oiflow.oifits import read_oifits
from oiflow.oifits.plot import PLOTS, plot_uv, quicklook


def test_quicklook_pngs_and_axes(shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oi = read_oifits(shared_data / "oifits/sim/oifitslib_bigtest2_v2_corr_inspol.fits")
    paths = quicklook(oi, tmp_path)
    assert set(paths) == set(PLOTS)  # V², T3, VIS, FLUX and uv are all present in this file
    fig = plot_uv(oi)
    ax = fig.axes[0]
    assert "Mλ" in ax.get_xlabel() and "East" in ax.get_xlabel()
    lo, hi = ax.get_xlim()
    assert lo > hi  # East (positive u) to the left
    offsets = ax.collections[0].get_offsets()
    n = len(offsets) // 2
    np.testing.assert_allclose(offsets[:n], -offsets[n:])  # both (u, v) and (-u, -v)
    v = oi.view("vis2")
    ok = v.usable
    np.testing.assert_allclose(np.sort(offsets[:n, 0]), np.sort(v.u[ok] / v.wavelength[ok] / 1e6))
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_no_plot_for_absent_observables(shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oi = read_oifits(shared_data / "oifits/real/midi/NGC5128_MIDI_2005.oifits")
    assert set(quicklook(oi, tmp_path)) == {"uv", "vis"}
