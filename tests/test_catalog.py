"""The product catalogue: granule columns from OIFITS, registration without duplicates, stage
runs for idempotent reprocessing, the `oiflow products` command — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flowdata import MJD0, make_file
from oiflow import catalog as catmod
from oiflow.catalog import COMPLETED, FAILED, Catalog, ProductRecord, granules_of
from oiflow.cli import main
from oiflow.oifits import read_oifits
from oiflow.oifits.build import array_table, new_oifits, target_table, vis2_table, wavelength_table, t3_table

PG_URL = os.environ.get("OIFLOW_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        cat = Catalog.for_root(tmp_path / "products")
        assert cat.url == f"sqlite:///{(tmp_path / 'products' / 'catalog.sqlite').resolve()}"
    else:
        if not PG_URL:
            pytest.skip("no PostgreSQL server: set OIFLOW_TEST_POSTGRES_URL (.ci/postgres.sh starts one)")
        cat = Catalog(PG_URL)
        catmod._Base.metadata.drop_all(cat.engine)  # a clean database per test
        catmod._Base.metadata.create_all(cat.engine)
        assert cat.engine.dialect.name == "postgresql"
    yield cat
    cat.close()


def test_granules_of_real_pionier_file(shared_data):
    """AX Cir (PIONIER): 300 V² rows and 200 T3 rows of 3 channels (MANIFEST: 900/600 points)."""
    oi = read_oifits(shared_data / "oifits/real/pionier/AXCir.oifits", warn=False)
    (g,) = granules_of(oi, 2)
    assert (g["target_name"], g["nb_vis"], g["nb_vis2"], g["nb_t3"], g["nb_channels"]) == ("AX_CIR", 0, 300, 200, 3)
    assert g["em_min"] == pytest.approx(1.6135e-6, rel=1e-4) and g["em_max"] == pytest.approx(1.7699e-6, rel=1e-4)
    assert g["s_ra"] == pytest.approx(223.146829) and g["s_dec"] == pytest.approx(-63.80985)
    assert g["instrument_mode"].startswith("PIONIER_Pnat") and g["facility_name"] == "VLTI"
    v2 = oi.view("vis2")
    assert g["t_min"] == pytest.approx(np.nanmin(v2.mjd)) and g["t_max"] == pytest.approx(np.nanmax(v2.mjd))
    assert g["night"] == "2013-07-14"  # MJD 56487.97–56488.06 (UTC 23:21–01:31), Paranal: same evening


def test_granules_split_by_target_insname_and_night():
    """Two targets, two instrument modes, rows on two nights → one granule per combination, row counts."""
    wave_a, wave_b = np.array([1.6e-6, 1.7e-6]), np.array([2.2e-6])
    mjd = np.array([60000.9, 60000.95, 60001.8, 60000.9])  # MJD 60000 = 2023-02-25: 3 rows that night, 1 the next
    tid = np.array([1, 1, 1, 2])
    n = len(mjd)
    v2a = vis2_table("INS_A", "ARR", target_id=tid, mjd=mjd, u=np.ones(n), v=np.ones(n),
                     sta_index=np.tile([1, 2], (n, 1)), vis2=np.ones((n, 2)), vis2err=np.full((n, 2), .1))
    v2b = vis2_table("INS_B", "ARR", target_id=np.array([2, 2]), mjd=np.array([60000.9, 60000.91]), u=np.ones(2),
                     v=np.ones(2), sta_index=np.tile([1, 2], (2, 1)), vis2=np.ones((2, 1)), vis2err=np.full((2, 1), .1))
    t3a = t3_table("INS_A", "ARR", target_id=np.array([1]), mjd=np.array([60000.9]), u1=np.ones(1), v1=np.ones(1),
                   u2=np.ones(1), v2=np.ones(1), sta_index=np.array([[1, 2, 3]]), t3phi=np.zeros((1, 2)),
                   t3phierr=np.ones((1, 2)), t3amp=np.ones((1, 2)), t3amperr=np.ones((1, 2)))
    oi = new_oifits(target_table(["STAR_A", "STAR_B"], ra_deg=[10.0, 20.0], dec_deg=[-5.0, 5.0]),
                    [array_table("ARR", ["S1", "S2", "S3"], np.zeros((3, 3)), frame="SKY")],
                    [wavelength_table("INS_A", wave_a), wavelength_table("INS_B", wave_b)], [v2a, v2b, t3a])
    got = {(g["target_name"], g["instrument_mode"], g["night"]): g for g in granules_of(oi, 1)}
    assert set(got) == {("STAR_A", "INS_A", "2023-02-25"), ("STAR_A", "INS_A", "2023-02-26"),
                        ("STAR_B", "INS_A", "2023-02-25"), ("STAR_B", "INS_B", "2023-02-25")}
    a1 = got[("STAR_A", "INS_A", "2023-02-25")]
    assert (a1["nb_vis2"], a1["nb_t3"], a1["nb_channels"], a1["calib_level"]) == (2, 1, 2, 1)
    assert a1["t_min"] == pytest.approx(60000.9) and a1["t_max"] == pytest.approx(60000.95)
    assert got[("STAR_A", "INS_A", "2023-02-26")]["nb_vis2"] == 1
    b = got[("STAR_B", "INS_B", "2023-02-25")]
    assert (b["nb_vis2"], b["nb_channels"], b["s_ra"], b["s_dec"]) == (2, 1, 20.0, 5.0)
    assert b["em_min"] == pytest.approx(2.2e-6, rel=1e-6)  # EFF_WAVE is float32


def _record(path: Path, level=2) -> ProductRecord:
    g = granules_of(read_oifits(path, warn=False), level)
    return ProductRecord.for_file(path, calib_level=level, stage="ingest", granules=g, settings_hash="s" * 64,
                                  inputs=[{"name": path.name, "sha256": "0" * 64}])


def test_register_replaces_rows_of_the_same_file(catalog, tmp_path):
    f1 = make_file(tmp_path / "a.fits", target="HD_A", mjd=MJD0)
    f2 = make_file(tmp_path / "b.fits", target="HD_B", mjd=MJD0 - 1)
    assert catalog.register([_record(f1), _record(f2)], flow_run_id="run-1") == 2
    assert catalog.register([_record(f1)], flow_run_id="run-2") == 1  # re-registering: replaced, not added
    rows = catalog.products()
    assert len(rows) == 2
    by_target = {r["target_name"]: r for r in rows}
    a = by_target["HD_A"]
    assert a["flow_run_id"] == "run-2" and a["size"] == f1.stat().st_size and a["access_estsize"] >= 1
    assert a["nb_vis2"] == 6 and a["nb_t3"] == 4 and a["nb_channels"] == 8 and a["night"] == "2023-12-31"
    assert a["input_checksums"] == [{"name": "a.fits", "sha256": "0" * 64}]
    assert [r["target_name"] for r in catalog.products(night="2023-12-30")] == ["HD_B"]
    assert catalog.products(level=1) == [] and len(catalog.products(level=2)) == 2
    assert [r["access_url"] for r in catalog.products(target="HD_A")] == [str(f1.resolve())]
    assert len(catalog.products(flow_run_id="run-1")) == 1


def test_l3_products_one_granule_each_and_unregister(catalog, tmp_path):
    """A fit JSON: calib_level 3, one granule spanning its inputs (long joined instrument
    modes fit the columns, PostgreSQL included); unregister removes rows, not files."""
    f1 = make_file(tmp_path / "a.fits", target="HD_A", mjd=MJD0, insname="M" * 100)
    f2 = make_file(tmp_path / "b.fits", target="HD_A", mjd=MJD0 - 1, insname="N" * 100)
    inputs = [g for f in (f1, f2) for g in granules_of(read_oifits(f), 2)]
    fit = tmp_path / "fit_ud.json"
    fit.write_text("{}")
    g = catmod.l3_granule(inputs, "HD_A", dataproduct_type="fit", obs_id="HD_A/2023-12-30_to_2023-12-31")
    rec = ProductRecord.for_file(fit, calib_level=3, stage="fit", granules=[g], access_format="application/json",
                                 obs_id=g["obs_id"])
    assert catalog.register([_record(f1), rec]) == 2
    (row,) = catalog.products(level=3)
    assert (row["dataproduct_type"], row["night"], row["nb_vis2"], row["nb_t3"]) == ("fit", "", 12, 8)
    assert len(row["instrument_mode"]) == 128 and row["access_format"] == "application/json"
    assert row["t_min"] < row["t_max"] and row["obs_id"] == "HD_A/2023-12-30_to_2023-12-31"
    assert catalog.unregister([str(fit.resolve())]) == 1 and catalog.unregister([]) == 0
    assert catalog.products(level=3) == [] and len(catalog.products()) == 1 and fit.is_file()


def test_stage_runs_decide_what_is_up_to_date(catalog, tmp_path):
    out = make_file(tmp_path / "o.fits")
    rec = _record(out)
    assert not catalog.up_to_date("ingest", "n1", "k" * 64)
    rid = catalog.begin_run("ingest", "n1", cache_key="k" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                            code_version="0.1.0+abc", inputs=[{"path": "x", "sha256": "0" * 64}], flow_run_id="f")
    assert not catalog.up_to_date("ingest", "n1", "k" * 64)  # RUNNING is not done
    catalog.finish_run(rid, status=COMPLETED, outputs=[rec.to_output()])
    assert catalog.up_to_date("ingest", "n1", "k" * 64)
    assert catalog.up_to_date("ingest", "n1", "k" * 64, verify=True)
    assert not catalog.up_to_date("ingest", "n1", "other" * 12)  # inputs/settings/code changed
    out.write_bytes(out.read_bytes()[:-2880])  # product damaged or replaced
    assert not catalog.up_to_date("ingest", "n1", "k" * 64)
    out.unlink()
    assert not catalog.up_to_date("ingest", "n1", "k" * 64)
    # a run left RUNNING by a killed process is closed as FAILED, never counted as done
    rid2 = catalog.begin_run("ingest", "n2", cache_key="k" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                             code_version="v", inputs=[])
    assert catalog.close_interrupted("ingest", "n2") == 1
    last = catalog.last_run("ingest", "n2", status=None)
    assert last.id == rid2 and last.status == FAILED and "interrupted" in last.failures[0]["error"]


def test_checksum_cache_reads_unchanged_files_once(catalog, tmp_path, monkeypatch):
    f = tmp_path / "in.bin"
    f.write_bytes(b"abc")
    calls = []
    real = catmod.sha256_file
    monkeypatch.setattr(catmod, "sha256_file", lambda p: calls.append(p) or real(p))
    first = catalog.file_sha256(f)
    assert first == real(f) and catalog.file_sha256(f) == first and len(calls) == 1
    f.write_bytes(b"abcd")  # new size → re-read
    assert catalog.file_sha256(f) == real(f) != first and len(calls) == 2


def test_checksums_of_a_units_inputs_resolve_links_and_are_written_once(catalog, tmp_path, monkeypatch):
    """resolved_sha256s: each path as ``Path.resolve`` gives it (a linked file → its target, a
    file in a linked directory → the real directory), the new checksums in one transaction, a
    file changed since replaces its row, and another process reads them without the files."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    a, b = real_dir / "a.bin", real_dir / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"bb")
    (tmp_path / "linked").symlink_to(real_dir)
    (tmp_path / "b-link.bin").symlink_to(b)
    paths = [tmp_path / "linked" / "a.bin", tmp_path / "b-link.bin", a, tmp_path / "real" / ".." / "real" / "b.bin"]
    writes = []
    real_write = catalog._write_core

    def counted():
        writes.append(1)
        return real_write()

    monkeypatch.setattr(catalog, "_write_core", counted)
    got = catalog.resolved_sha256s(paths)
    assert [p for p, _ in got] == [str(p.resolve()) for p in paths] == [str(a), str(b), str(a), str(b)]
    assert [d for _, d in got] == [catmod.sha256_file(a), catmod.sha256_file(b)] * 2 and len(writes) == 1
    assert catalog.resolved_sha256s(paths) == got and len(writes) == 1  # cached: nothing written
    a.write_bytes(b"aaa")
    assert catalog.file_sha256(a) == catmod.sha256_file(a) and len(writes) == 2
    fresh = Catalog(catalog.url)
    try:
        monkeypatch.setattr(catmod, "sha256_file", lambda p: (_ for _ in ()).throw(AssertionError(f"read {p}")))
        assert fresh.resolved_sha256s([a, b]) == catalog.resolved_sha256s([a, b])
    finally:
        fresh.close()


def test_a_unit_closes_in_one_transaction_and_its_products_join_the_checksum_cache(catalog, tmp_path, monkeypatch):
    """record_run: the previous run's products it did not write again leave the catalogue, the new
    ones come in, the run ends COMPLETED with its outputs; the next stage's planning then takes the
    products' checksums without reading the files."""
    old, new = make_file(tmp_path / "old.fits"), make_file(tmp_path / "new.fits", seed=1)
    r1 = catalog.begin_run("calibrate", "n1", cache_key="a" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                           code_version="v", inputs=[])
    catalog.record_run(r1, status=COMPLETED, products=[_record(old)])
    assert catalog.last_completed("calibrate", "n1").outputs == [_record(old).to_output()]
    r2 = catalog.begin_run("calibrate", "n1", cache_key="b" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                           code_version="v", inputs=[])
    assert r2 != r1
    calls = []
    monkeypatch.setattr(catmod, "sha256_file", lambda p: calls.append(p) or "0" * 64)
    rec = _record(new)  # checksum computed here, as a worker does (the patched function: "0"*64)
    calls.clear()
    catalog.record_run(r2, status=COMPLETED, products=[rec], unregister=[str(old.resolve())])
    assert [r["access_url"] for r in catalog.products()] == [str(new.resolve())]
    last = catalog.last_completed("calibrate", "n1")
    assert (last.id, last.cache_key, last.outputs) == (r2, "b" * 64, [rec.to_output()])
    assert catalog.run_is_current(last, "b" * 64) and not catalog.run_is_current(last, "a" * 64)
    fresh = Catalog(catalog.url)  # another process: the checksum from the catalogue, not the file
    try:
        assert fresh.file_sha256(new) == rec.sha256 and calls == []
    finally:
        fresh.close()
    # a failed unit: no products, its failures kept
    r3 = catalog.begin_run("calibrate", "n2", cache_key="c" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                           code_version="v", inputs=[])
    catalog.record_run(r3, status=FAILED, failures=[{"item": "n2", "error": "DataError: no calibrator"}])
    assert catalog.last_completed("calibrate", "n2") is None
    assert catalog.last_run("calibrate", "n2", status=None).failures == [{"item": "n2", "error": "DataError: no calibrator"}]


def test_the_reduce_plan_of_an_unchanged_night_is_remembered(catalog, tmp_path):
    """remembered_units: planned once; unchanged listing and dependencies → the same units without
    planning; a file changed (size or time) or another setting → planned again."""
    import os

    from oiflow.archive import make_unit, remembered_units

    night = tmp_path / "night"
    night.mkdir()
    f = make_file(night / "a.fits")
    calls = []

    def plan():
        calls.append(1)
        return [make_unit("reduce", "n/a", [f], {"x": 1}, "v1", tmp_path / "out", catalog, params={"obs_id": "a"})]

    first = remembered_units(catalog, "reduce", night, ["settings", 1], plan)
    again = remembered_units(catalog, "reduce", night, ["settings", 1], plan)
    assert len(calls) == 1 and again == first and again[0].cache_key == first[0].cache_key
    assert again[0].params == {"obs_id": "a"} and again[0].settings == {"x": 1}
    remembered_units(catalog, "reduce", night, ["settings", 2], plan)  # another setting
    assert len(calls) == 2
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the file touched
    remembered_units(catalog, "reduce", night, ["settings", 2], plan)
    assert len(calls) == 3
    (night / "b.fits").write_bytes(b"x" * 2880)  # a new file
    remembered_units(catalog, "reduce", night, ["settings", 2], plan)
    assert len(calls) == 4


def test_a_writer_leaves_an_sqlite_catalogue_in_rollback_mode_and_an_idle_one_untouched(tmp_path):
    import contextlib
    import sqlite3

    root = tmp_path / "products"
    with Catalog.for_root(root, writer=True) as cat:
        cat.products()
    db = root / "catalog.sqlite"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    with Catalog.for_root(root, writer=True) as cat:  # reads only: no WAL, no write
        cat.products()
        cat.last_completed("reduce", "x")
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    with Catalog.for_root(root, writer=True) as cat:
        rid = cat.begin_run("reduce", "x", cache_key="k" * 64, input_digest="i" * 64, settings_hash="s" * 64,
                            code_version="v", inputs=[])
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # while it writes
        cat.record_run(rid, status=COMPLETED)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # at rest: readable read-only
    assert sorted(p.name for p in root.iterdir()) == ["catalog.sqlite"]


def test_bad_url_is_a_config_error():
    from oiflow.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open the product catalogue"):
        Catalog("postgresql+psycopg2://nobody:secret@127.0.0.1:1/none")


def test_products_command_filters_and_json(tmp_path, capsys):
    root = tmp_path / "products"
    with Catalog.for_root(root) as cat:
        cat.register([_record(make_file(tmp_path / "a.fits", target="HD_A")),
                      _record(make_file(tmp_path / "b.fits", target="HD_B", mjd=MJD0 - 1), level=1)])
    assert main(["products", "--root", str(root), "--json", "--level", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["target_name"], r["calib_level"], r["night"]) for r in rows] == [("HD_B", 1, "2023-12-30")]
    assert main(["products", "--root", str(root), "--target", "HD_A"]) == 0
    out = capsys.readouterr().out
    assert "HD_A" in out and "HD_B" not in out and "2023-12-31" in out
    assert main(["products", "--root", str(tmp_path / "nothing")]) == 2


def test_an_older_catalogue_gets_the_run_lookup_index_when_opened(tmp_path):
    """A unit's last run is found through (stage, unit, status): a catalogue made before that
    index existed gets it when opened (else every rescan of a unit searched all runs of its stage)."""
    import contextlib
    import sqlite3

    root = tmp_path / "products"
    Catalog.for_root(root).close()
    db = root / "catalog.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP INDEX ix_stage_run_unit_status")
        conn.commit()
    with Catalog.for_root(root) as cat:
        cat.last_completed("reduce", "n1/o1")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM stage_run WHERE stage='reduce' AND unit='n1/o1' "
                            "AND status='COMPLETED' ORDER BY id DESC LIMIT 1").fetchall()
    assert "ix_stage_run_unit_status" in str(plan)
