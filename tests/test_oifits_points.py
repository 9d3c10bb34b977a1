"""Damaged locations of usable points (non-finite or absurd u, v, wavelength) are refused with an
error naming file, table, column and rows; flagged points and real files pass."""

from __future__ import annotations

import numpy as np
import pytest

from oiflow.errors import OIFitsError
from oiflow.oifits import read_oifits
from oiflow.oifits.views import check_usable_points, implausible_points

AXCIR = "oifits/real/pionier/AXCir.oifits"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e308, 2e5])
@pytest.mark.parametrize("kind,column", [("vis2", "UCOORD"), ("vis2", "VCOORD"), ("t3", "U2COORD"), ("t3", "V1COORD")])
def test_damaged_coordinate_is_named(shared_data, kind, column, value):
    oi = read_oifits(shared_data / AXCIR, warn=False)
    table = next(t for t in oi.tables if t.EXTNAME == {"vis2": "OI_VIS2", "t3": "OI_T3"}[kind])
    table[column][[3, 7]] = value
    with pytest.raises(OIFitsError) as err:
        check_usable_points(oi.view(kind), oi)
    e = err.value
    assert (e.file, e.hdu, e.column, e.rows) == (str(shared_data / AXCIR), table.label, column, [3, 7])
    assert "AXCir.oifits" in str(e) and column in str(e) and "rows 3, 7" in str(e)


def test_damaged_wavelength_names_the_channel(shared_data):
    oi = read_oifits(shared_data / AXCIR, warn=False)
    oi.wavelengths[0]["EFF_WAVE"][1] = np.nan
    with pytest.raises(OIFitsError) as err:
        check_usable_points(oi.view("vis2"), oi)
    assert err.value.column == "EFF_WAVE" and err.value.rows == [1] and err.value.hdu == oi.wavelengths[0].label


def test_flagged_points_are_left_to_the_selection(shared_data):
    oi = read_oifits(shared_data / AXCIR, warn=False)
    table = next(t for t in oi.tables if t.EXTNAME == "OI_VIS2")
    table["UCOORD"][5] = np.nan
    table["FLAG"][5, :] = True
    view = oi.view("vis2")
    assert implausible_points(view) == {}
    check_usable_points(view, oi)


def test_real_files_pass_and_nan_errors_are_reported_only_on_request(shared_data):
    oi = read_oifits(shared_data / "oifits/real/amber/HD87643_K.fits", warn=False)
    view = oi.view("vis")  # unflagged VISAMP with NaN VISAMPERR (a real AMBER file)
    check_usable_points(view, oi)
    assert implausible_points(view) == {}
    assert set(implausible_points(view, errors=True)) == {"VISAMPERR"}
