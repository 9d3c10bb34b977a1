"""Verdicts: the vocabulary, combining several, and their way into the catalogue (columns added to
an older catalogue, filters), the run summary and the exit code of `oiflow run`'s summary."""

from __future__ import annotations

import sqlite3

import pytest

from oiflow.flows.summary import RunSummary
from oiflow.catalog import Catalog, ProductRecord
from oiflow.cli.pipeline_cmds import _print_summary
from oiflow.verdict import (MAXITER, NOT_AT_MINIMUM, OK, POOR_FIT, STATUSES, UNCONSTRAINED, Verdict, rank,
                            worst)


def test_vocabulary_and_worst():
    assert STATUSES[0] == OK and rank(OK) == 0
    assert Verdict().ok and not Verdict(POOR_FIT, ["χ²_red 12 > 3"]).ok
    with pytest.raises(ValueError, match="unknown verdict status 'great'"):
        Verdict("great")
    v = worst([Verdict(POOR_FIT, ["a"]), None, Verdict(UNCONSTRAINED, ["b", "a"]), Verdict(MAXITER, ["c"])])
    assert v.status == UNCONSTRAINED and v.reasons == ("a", "b", "c")
    assert worst([]).ok and worst([None]).ok
    d = Verdict(NOT_AT_MINIMUM, ["gradient 3.1 σ"], {"grad_norm": 3.1}).to_dict()
    assert d == {"status": "not-at-minimum", "ok": False, "reasons": ["gradient 3.1 σ"], "figures": {"grad_norm": 3.1}}
    assert Verdict.from_dict(d) == Verdict(NOT_AT_MINIMUM, ("gradient 3.1 σ",), {"grad_norm": 3.1})
    assert Verdict.from_dict(None) is None
    assert Verdict(POOR_FIT, ["χ²_red 12 > 3"]).line() == "verdict: poor-fit (χ²_red 12 > 3)"


def _record(tmp_path, name, verdict):
    p = tmp_path / name
    p.write_text(name)
    g = {"target_name": "STAR", "calib_level": 3, "dataproduct_type": "image", "night": "2023-03-15"}
    return ProductRecord.for_file(p, calib_level=3, stage="image", granules=[g], verdict=verdict)


def test_catalogue_stores_and_filters_verdicts(tmp_path):
    with Catalog.for_root(tmp_path / "products") as cat:
        cat.register([_record(tmp_path, "a.fits", Verdict().to_dict()),
                      _record(tmp_path, "b.fits", Verdict(POOR_FIT, ["χ²_red 40 > 3 (V2)"], {"chi2_red": 40.0}).to_dict()),
                      _record(tmp_path, "c.fits", None)])
        rows = {r["access_url"].rsplit("/", 1)[1]: r for r in cat.products()}
        assert rows["a.fits"]["verdict"] == "ok" and rows["c.fits"]["verdict"] is None
        assert rows["b.fits"]["verdict_detail"] == {"reasons": ["χ²_red 40 > 3 (V2)"], "figures": {"chi2_red": 40.0}}
        assert [r["access_url"].rsplit("/", 1)[1] for r in cat.products(verdict="not-ok")] == ["b.fits"]
        assert [r["access_url"].rsplit("/", 1)[1] for r in cat.products(verdict="ok")] == ["a.fits"]


def test_older_catalogue_gets_the_verdict_columns(tmp_path):
    """A catalogue written before verdicts existed opens, keeps its rows (verdict NULL) and takes new ones."""
    root = tmp_path / "products"
    with Catalog.for_root(root) as cat:
        cat.register([_record(tmp_path, "old.fits", None)])
    db = sqlite3.connect(root / "catalog.sqlite")
    db.execute("DROP INDEX IF EXISTS ix_granule_verdict")
    db.execute("ALTER TABLE granule DROP COLUMN verdict")
    db.execute("ALTER TABLE granule DROP COLUMN verdict_detail")
    db.commit()
    assert "verdict" not in {r[1] for r in db.execute("PRAGMA table_info(granule)")}
    db.close()
    with Catalog.for_root(root) as cat:
        (old,) = cat.products()
        assert old["verdict"] is None and old["access_url"].endswith("old.fits")
        cat.register([_record(tmp_path, "new.fits", Verdict(MAXITER, ["200 iterations"]).to_dict())])
        assert [r["verdict"] for r in cat.products(verdict="maxiter")] == ["maxiter"]


def test_run_summary_and_exit_code_follow_the_verdicts(tmp_path, capsys):
    good = {"access_url": str(tmp_path / "L3/S/n/fit_ud.json"), "target_name": "S", "verdict": "ok",
            "night": "n", "instrument_mode": "I", "calib_level": 3, "nb_vis": 0, "nb_vis2": 3, "nb_t3": 1}
    bad = dict(good, access_url=str(tmp_path / "L3/S/n/image.fits"), verdict="poor-fit",
               verdict_detail={"reasons": ["χ²_red 57 > 3 (T3PHI)"], "figures": {}})
    s = RunSummary(flow="test", root=str(tmp_path), processed=["fit S/n", "image S/n"], products=[good, bad, dict(bad)])
    assert not s.ok and [r["verdict"] for r in s.not_ok] == ["poor-fit"]
    assert "1 product(s) with a verdict other than ok: image.fits (S): poor-fit" in s.state_message
    assert "| S | image.fits | poor-fit | χ²_red 57 > 3 (T3PHI) |" in s.markdown()
    assert _print_summary(s, None) == 1
    err = capsys.readouterr().err
    assert "S: image.fits: poor-fit (χ²_red 57 > 3 (T3PHI))" in err
    assert _print_summary(RunSummary(flow="test", root=str(tmp_path), products=[good]), None) == 0
