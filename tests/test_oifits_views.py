"""The flat views put each column where its field name says: VISPHI in ``phase`` (radians),
T3AMP in ``amp`` (as stored), T3PHI in ``value`` (radians), points row-major across tables;
a kind without tables gives empty arrays of the right types."""

from __future__ import annotations

import numpy as np

from oiflow.oifits import read_oifits

AMBER = "oifits/real/amber/AMBER_070409.fits"  # two OI_VIS, OI_VIS2 and OI_T3 tables


def _stacked(oi, extname, column):
    """The column's cells of every table of ``extname``, row × channel, tables in file order."""
    return np.concatenate([np.asarray(t[column], float).reshape(t.nrows, -1).ravel()
                           for t in oi.tables if t.EXTNAME == extname])


def test_vis_view_holds_visamp_as_value_and_visphi_as_phase(shared_data):
    oi = read_oifits(shared_data / AMBER, warn=False)
    v = oi.view("vis")
    np.testing.assert_array_equal(v.value, _stacked(oi, "OI_VIS", "VISAMP"))
    np.testing.assert_array_equal(v.error, _stacked(oi, "OI_VIS", "VISAMPERR"))
    np.testing.assert_allclose(v.phase, np.deg2rad(_stacked(oi, "OI_VIS", "VISPHI")), rtol=0, atol=1e-15)
    np.testing.assert_allclose(v.phase_error, np.deg2rad(_stacked(oi, "OI_VIS", "VISPHIERR")), rtol=0, atol=1e-15)
    assert v.amp is None and v.amp_error is None and v.u2 is None
    tables = [k for k, t in enumerate(oi.tables) if t.EXTNAME == "OI_VIS"]
    assert sorted(set(v.table.tolist())) == tables
    first = oi.tables[tables[0]]
    nwave = np.asarray(first["VISAMP"]).reshape(first.nrows, -1).shape[1]
    np.testing.assert_array_equal(v.row[: 2 * nwave], np.repeat([0, 1], nwave))
    np.testing.assert_array_equal(v.channel[: 2 * nwave], np.tile(np.arange(nwave), 2))
    np.testing.assert_array_equal(v.u[:nwave], np.full(nwave, float(first["UCOORD"][0])))


def test_t3_view_holds_closure_phase_in_radians_and_t3amp_as_stored(shared_data):
    oi = read_oifits(shared_data / AMBER, warn=False)
    t3 = oi.view("t3")
    np.testing.assert_allclose(t3.value, np.deg2rad(_stacked(oi, "OI_T3", "T3PHI")), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(t3.amp, _stacked(oi, "OI_T3", "T3AMP"))
    np.testing.assert_array_equal(t3.amp_error, _stacked(oi, "OI_T3", "T3AMPERR"))
    assert t3.phase is None and t3.sta_index.shape == (len(t3), 3)
    np.testing.assert_allclose(t3.u3, -(t3.u + t3.u2))


def test_a_kind_without_tables_gives_typed_empty_arrays(shared_data):
    oi = read_oifits(shared_data / AMBER, warn=False)
    flux = oi.view("flux")
    assert len(flux) == 0 and flux.sta_index.shape == (0, 1)
    assert flux.flag.dtype == bool and flux.target.dtype == object and flux.row.dtype.kind == "i"
    assert flux.u2 is None and flux.amp is None and flux.phase is None
