"""Property-based fuzz of the reader and the validator: whatever the bytes, the only exception
is OIFitsError (mutated header values, deleted/renamed/retyped columns, truncations, random bytes)."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oiflow.errors import OIFitsError
from oiflow.oifits import read_oifits
from oiflow.oifits.validate import validate

SMALL = "oifits/real/pionier/alfCenA_PIONI.2016-05-31T00_55_19.fits"
SMALL_V2 = "oifits/sim/oitools_testdata_opt_v2.fits"
#: examples per property in the default tier; raise with OIFLOW_FUZZ_EXAMPLES=500 for a long run
N_EXAMPLES = int(os.environ.get("OIFLOW_FUZZ_EXAMPLES", "15"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                print_blob=True)


class _Bytes(dict):
    """File contents by name; a short repr keeps hypothesis reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} corpus files>"


def _read_and_validate(source, path_for_bytes=None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            oi = read_oifits(source, warn=False)
        except OIFitsError:
            return
        rep = validate(oi)
        assert "VALIDATOR_INTERNAL" not in rep.rules(), [f.message for f in rep.findings if f.rule == "VALIDATOR_INTERNAL"]
        for kind in ("vis2", "t3", "vis", "flux"):
            try:
                oi.view(kind)
            except OIFitsError:
                pass


@pytest.fixture(scope="module")
def raw(shared_data):
    return _Bytes({name: (shared_data / name).read_bytes() for name in (SMALL, SMALL_V2)})


@FUZZ
@given(which=st.sampled_from([SMALL, SMALL_V2]), cut=st.integers(min_value=0, max_value=200_000))
def test_truncated_files(tmp_path, raw, which, cut):
    data = raw[which]
    p = tmp_path / "cut.fits"
    p.write_bytes(data[: cut % len(data)])
    _read_and_validate(p)


@FUZZ
@given(which=st.sampled_from([SMALL, SMALL_V2]), seed=st.integers(0, 2**32 - 1), nflip=st.integers(1, 40))
def test_random_byte_flips(tmp_path, raw, which, seed, nflip):
    data = bytearray(raw[which])
    rng = np.random.default_rng(seed)
    for pos in rng.integers(0, len(data), nflip):
        data[pos] = int(rng.integers(0, 256))
    p = tmp_path / "flip.fits"
    p.write_bytes(bytes(data))
    _read_and_validate(p)


@FUZZ
@given(blob=st.binary(min_size=0, max_size=6000))
def test_random_bytes(tmp_path, blob):
    p = tmp_path / "random.fits"
    p.write_bytes(blob)
    _read_and_validate(p)


_VALUES = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.booleans())


@FUZZ
@given(which=st.sampled_from([SMALL, SMALL_V2]), hdu=st.integers(0, 12),
       key=st.sampled_from(["OI_REVN", "INSNAME", "ARRNAME", "EXTNAME", "DATE-OBS", "CONTENT", "NAXIS2", "FRAME",
                            "CORRNAME", "NDATA", "CALSTAT", "ARRAYX", "TFORM3", "TTYPE2", "TUNIT4", "TDIM5", "NPOL"]),
       value=_VALUES)
def test_mutated_header_values(tmp_path, raw, which, hdu, key, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdul = fits.open(io.BytesIO(raw[which]))
        h = hdul[hdu % len(hdul)].header
        if value is None:
            h.remove(key, ignore_missing=True)
        else:
            try:
                h[key] = value
            except Exception:
                return
        buf = io.BytesIO()
        try:
            hdul.writeto(buf, output_verify="ignore")
        except Exception:
            return  # astropy itself refuses to write this header
    p = tmp_path / "hdr.fits"
    p.write_bytes(buf.getvalue())
    _read_and_validate(p)


@FUZZ
@given(which=st.sampled_from([SMALL, SMALL_V2]), hdu=st.integers(1, 12), col=st.integers(0, 30),
       action=st.sampled_from(["delete", "rename", "retype_str", "retype_int", "retype_float", "reshape"]))
@example(which=SMALL_V2, hdu=9, col=1, action="retype_int")  # OI_INSPOL INSNAME as a 2-D int column
def test_mutated_columns(tmp_path, raw, which, hdu, col, action):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdul = fits.open(io.BytesIO(raw[which]))
        idx = 1 + (hdu - 1) % (len(hdul) - 1)
        table = hdul[idx]
        cols = list(table.columns)
        c = cols[col % len(cols)]
        nrows = table.header["NAXIS2"]
        new = []
        for other in cols:
            if other.name != c.name:
                new.append(fits.Column(name=other.name, format=other.format, unit=other.unit, dim=other.dim,
                                       array=table.data[other.name]))
                continue
            data = np.asarray(table.data[c.name])
            if action == "delete":
                continue
            if action == "rename":
                new.append(fits.Column(name=c.name + "_X", format=c.format, array=data))
            elif action == "retype_str":
                new.append(fits.Column(name=c.name, format="8A", array=np.array(["x"] * nrows)))
            elif action == "retype_int":
                new.append(fits.Column(name=c.name, format="1J", array=np.arange(nrows, dtype=np.int32)))
            elif action == "retype_float":
                new.append(fits.Column(name=c.name, format="3E", array=np.zeros((nrows, 3), np.float32)))
            else:
                new.append(fits.Column(name=c.name, format="7D", array=np.ones((nrows, 7))))
        hdul[idx] = fits.BinTableHDU.from_columns(new, header=fits.Header(
            [card for card in table.header.cards if not card.keyword.startswith(("TTYPE", "TFORM", "TUNIT", "TDIM"))
             and card.keyword not in ("NAXIS1", "NAXIS2", "TFIELDS", "CHECKSUM", "DATASUM")]), nrows=nrows)
        buf = io.BytesIO()
        hdul.writeto(buf, output_verify="ignore")
    p = tmp_path / "col.fits"
    p.write_bytes(buf.getvalue())
    _read_and_validate(p)
