"""The fast OIFITS encoder of oiflow.oifits.write writes the same bytes as the astropy path.

With the clock frozen (DATE and the CHECKSUM/DATASUM comments), every file of the shared corpus
and L1 products of the reducer are encoded both ways and compared byte for byte; the fast files
verify their checksums with astropy and with our reader, read back identically (astropy and our
reader) and validate (here for L1 products, in test_oifits_roundtrip.py for the corpus).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from oifits_corpus import READABLE, REAL, ids
from oiflow.errors import OIFitsWarning
from oiflow.oifits import read_oifits, rawfits, write, write_oifits
from oiflow.oifits.build import new_oifits, target_table, vis2_table, wavelength_table, array_table
from oiflow.oifits.schema import V1, V2
from oiflow.oifits.validate import validate

STAMP = "2024-01-02T03:04:05"


@pytest.fixture()
def frozen_clock(monkeypatch):
    monkeypatch.setattr(write, "_utc_now", lambda: STAMP)
    monkeypatch.setattr(write, "_checksum_timestamp", lambda: STAMP)
    monkeypatch.setattr(fits.hdu.base._ValidHDU, "_get_timestamp", lambda self: STAMP)


def astropy_bytes(oi, version=V2, provenance=None) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        warnings.simplefilter("ignore", OIFitsWarning)  # issued by the fast encoding already
        write.to_hdulist(oi, version, provenance).writeto(buf, checksum=True)
    return buf.getvalue()


def fast_bytes(oi, version=V2, provenance=None) -> bytes:
    blob = write._try_fast(oi, version, provenance)
    assert blob is not None, "the fast encoder handed the file to astropy"
    return blob


def assert_same_bytes(fast: bytes, ref: bytes):
    if fast != ref:
        n = min(len(fast), len(ref))
        first = next((k for k in range(n) if fast[k] != ref[k]), n)
        card = first // 80 * 80
        pytest.fail(f"lengths {len(fast)} / {len(ref)}, first difference at byte {first}:\n"
                    f"fast:    {fast[card:card + 80]!r}\nastropy: {ref[card:card + 80]!r}")


def assert_checksums_verify(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum mismatch
        with fits.open(path, checksum=True) as hdul:
            for h in hdul:
                assert "CHECKSUM" in h.header and "DATASUM" in h.header
                _ = h.data


@pytest.mark.parametrize("entry", READABLE, ids=ids(READABLE))
def test_corpus_fast_encoding_is_byte_identical_to_astropy(shared_data, frozen_clock, tmp_path, entry):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OIFitsWarning)
        src = read_oifits(shared_data / "oifits" / entry.file)
    # OIFITS1 for the real files; the HDUs that are not OI tables are astropy's in both versions
    versions = (V2, V1) if entry in REAL and not src.extra_hdus else (V2,)
    encoded = {}
    for version in versions:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OIFitsWarning)
            encoded[version] = fast_bytes(src, version)
        assert_same_bytes(encoded[version], astropy_bytes(src, version))
    out = tmp_path / "fast.fits"
    out.write_bytes(encoded[V2])
    assert_checksums_verify(out)
    back = read_oifits(out, warn=False)
    assert not [f for f in back.read_findings if f.rule.startswith("CHECKSUM")]
    # astropy reads the same tables back as our reader
    with fits.open(out) as hdul:
        assert [h.name for h in hdul[1:]] == [t.EXTNAME for t in back.tables] + [h.name for h in src.extra_hdus]
        for t, h in zip(back.tables, hdul[1:]):
            for name, col in t.columns.items():
                a = np.asarray(h.data[name])
                if a.dtype.kind in "SU":
                    assert list(np.char.strip(a.astype(str))) == list(np.char.strip(col.astype(str)))
                else:
                    np.testing.assert_array_equal(a.reshape(col.shape), col)
    # that these files validate with zero errors is checked by test_oifits_roundtrip.py (write_oifits
    # takes this fast path)


def test_l1_products_fast_encoding_is_byte_identical(frozen_clock, tmp_path):
    """Reducer outputs, in memory with their provenance, as ``reduce_observation`` writes them."""
    from night_factory import reduced_night
    from oiflow.config import ReduceConfig
    from oiflow.reduce import plan_night
    from oiflow.reduce.pipeline import l1_product

    raw, _, _, _, _ = reduced_night("point")
    plan = plan_night(raw)
    for obs in plan.observations[:3]:
        oi, prov = l1_product(plan, obs.obs_id, ReduceConfig())
        fast = fast_bytes(oi, V2, prov)
        assert_same_bytes(fast, astropy_bytes(oi, V2, prov))
        out = tmp_path / f"{obs.obs_id}.fits"
        write_oifits(oi, out, provenance=prov)
        assert out.read_bytes() == fast
        assert_checksums_verify(out)
        back = read_oifits(out)
        assert back.read_findings == [] and validate(back).errors == []
        np.testing.assert_array_equal(back.vis2[0]["VIS2DATA"], oi.vis2[0]["VIS2DATA"])
        np.testing.assert_array_equal(back.t3[0]["T3PHI"], oi.t3[0]["T3PHI"])


def _small_oifits():
    wave = np.array([1.6e-6, 1.7e-6, 1.8e-6])
    return new_oifits(
        target_table(["STAR"], ra_deg=[10.0], dec_deg=[-20.0]),
        [array_table("VLTI", ["A0", "B2"], staxyz=[[0, 0, 0], [10, 5, 0]])],
        [wavelength_table("INS", wave, np.full(3, 1e-7))],
        [vis2_table("INS", "VLTI", target_id=1, mjd=60000.1, u=[10.0], v=[5.0], sta_index=[(1, 2)],
                    vis2=np.array([[0.9, 0.8, 0.7]]), vis2err=np.full((1, 3), 0.01))],
    )


def test_unusual_cards_are_formatted_as_astropy_formats_them(frozen_clock):
    """Cards near the edges of the card format: the fast encoder either formats them as astropy
    does or asks astropy for that card."""
    oi = _small_oifits()
    h = oi.primary_header
    h["OBSERVER"] = "O'Hara"  # quote doubled
    h["LONGSTR"] = "x" * 100  # CONTINUE cards
    h["EMPTY"] = ""
    h["FLOATS"] = (1.0e-300, "tiny")
    h["BIGINT"] = 2**62
    h["NPFLOAT"] = np.float64(0.1)
    h["NPF32"] = np.float32(0.1)
    h["NPINT"] = np.int16(-3)
    h["FLAG"] = np.bool_(False)
    h["LONGCOM"] = (1.5, "c" * 90)  # comment truncated by astropy
    h["HIERARCH ESO DET CHIP NAME"] = "a value that makes this card exactly eighty-one  "[:45]
    h["HIERARCH ESO INS GRAT1 WLEN"] = (2.2e-6, "grating central wavelength")
    h["HIERARCH X"] = 1
    h.add_comment("a comment card")
    h.add_history("h" * 150)  # split over three HISTORY cards
    t = oi.vis2[0].header
    t["OBSERVER"] = "first"
    t["NSTR"] = "  leading and trailing  "
    t.add_comment("table comment")
    t["AFTERCOM"] = 3  # goes before the trailing COMMENT, as astropy puts it
    assert_same_bytes(fast_bytes(oi), astropy_bytes(oi))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_-]{0,7}", fullmatch=True).filter(
    lambda k: k not in {"END", "SIMPLE", "EXTEND", "BITPIX", "NAXIS", "CHECKSUM", "DATASUM", "HISTORY", "COMMENT",
                        "PCOUNT", "GCOUNT", "TFIELDS", "XTENSION", "THEAP", "GROUPS", "EXTNAME", "OI_REVN",
                        "NAXIS1", "NAXIS2"} and not k.startswith(("TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL",
                                                                  "TSCAL", "TZERO", "TDISP", "TBCOL"))),
    st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=90)), max_size=8),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=50))
def test_random_keywords_encode_as_astropy(cards, comment):
    write._utc_now, old = (lambda: STAMP), write._utc_now
    old_ts, write._checksum_timestamp = write._checksum_timestamp, (lambda: STAMP)
    old_ap = fits.hdu.base._ValidHDU._get_timestamp
    fits.hdu.base._ValidHDU._get_timestamp = lambda self: STAMP
    try:
        oi = _small_oifits()
        for k, v in cards.items():
            oi.vis2[0].header[k] = (v, comment)
            oi.primary_header[k] = v
        assert_same_bytes(fast_bytes(oi), astropy_bytes(oi))
    finally:
        write._utc_now, write._checksum_timestamp = old, old_ts
        fits.hdu.base._ValidHDU._get_timestamp = old_ap


def test_what_the_fast_encoder_leaves_to_astropy_is_written_by_astropy(tmp_path):
    oi = _small_oifits()
    oi.primary_data = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert write._try_fast(oi, V2, None) is None
    out = write_oifits(oi, tmp_path / "img.fits")
    assert_checksums_verify(out)
    np.testing.assert_array_equal(read_oifits(out).primary_data, oi.primary_data)
    oi = _small_oifits()
    oi.vis2[0].columns["EXTRA8"] = np.array([-1], dtype=np.int8)  # no FITS type holds int8 as such
    assert write._try_fast(oi, V2, None) is None
    assert_checksums_verify(write_oifits(oi, tmp_path / "i8.fits"))


def test_warnings_are_issued_once(tmp_path):
    oi = _small_oifits()
    from oiflow.oifits.build import flux_table

    oi.tables.append(flux_table("INS", "VLTI", target_id=1, mjd=60000.1, fluxdata=np.ones((1, 3)),
                                fluxerr=np.full((1, 3), 0.1), sta_index=[1], calstat="U"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_oifits(oi, tmp_path / "v1.fits", version=V1)
    dropped = [w for w in caught if "OIFITS2-only table dropped" in str(w.message)]
    assert len(dropped) == 1 and dropped[0].category is OIFitsWarning


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=400), st.integers(0, 2**32 - 1))
def test_encoded_checksum_makes_the_hdu_sum_to_minus_zero(text, datasum):
    """FITS checksum convention: with the encoded CHECKSUM in place of 16 zeros, the header sum
    plus the data sum is -0 in 32-bit ones' complement arithmetic."""
    card = f"{'CHECKSUM':8}= '{'0' * 16}'".ljust(80).encode()
    head = card + text.ljust(-(-len(text) // 80) * 80 if text else 0, b" ")
    head = head + b" " * (-len(head) % rawfits.BLOCK)
    enc = rawfits.encode_checksum(rawfits.add_sums(rawfits.bytes_sum(head), datasum))
    assert len(enc) == 16 and enc.isalnum()
    filled = head[:11] + enc.encode() + head[27:]
    assert rawfits.add_sums(rawfits.bytes_sum(filled), datasum) == 0xFFFFFFFF
