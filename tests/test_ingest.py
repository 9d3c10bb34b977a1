"""Ingest and change detection without Prefect: units, products, failures, what is up to date."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowdata import make_archive, make_file
from oiflow.archive import WorkUnit, code_version, plan_units
from oiflow.catalog import COMPLETED, Catalog
from oiflow.errors import ConfigError
from oiflow.ingest import archive_units, file_units, ingest_unit
from oiflow.product_tree import remove_stale_temporaries, safe_name
from oiflow.provenance import sha256_file


def _complete(cat: Catalog, unit: WorkUnit, result) -> None:
    rid = cat.begin_run(unit.stage, unit.unit, cache_key=unit.cache_key, input_digest=unit.input_digest,
                        settings_hash=unit.settings_hash, code_version=unit.code_version, inputs=unit.input_records())
    cat.register(result.products, run_id=rid)
    cat.finish_run(rid, status=COMPLETED, outputs=[p.to_output() for p in result.products])


def test_safe_names_cannot_escape_the_tree():
    assert safe_name("../../etc/passwd") == "___etc_passwd"
    assert safe_name("HD 12345; rm -rf") == "HD_12345_rm_-rf"
    assert safe_name(".hidden") == "hidden" and safe_name("") == "_"


def test_ingest_copies_bytes_registers_granules_and_fails_only_bad_files(tmp_path):
    (night,) = make_archive(tmp_path / "archive", n_nights=1, files_per_night=2, bad={0: 1})
    before = {p.name: sha256_file(p) for p in night.iterdir()}
    root = tmp_path / "products"
    with Catalog.for_root(root) as cat:
        (unit,) = archive_units(tmp_path / "archive", root, 2, cat)
        out_dir = root / night.name / "L2"
        out_dir.mkdir(parents=True)
        stale = out_dir / ".obs_00.abc123.fits.tmp"  # left by a killed writer
        stale.write_bytes(b"half")
        result = ingest_unit(unit)
    assert not stale.exists()
    assert [Path(p.path).name for p in result.products] == ["obs_00.fits", "obs_01.fits"]
    assert [Path(f["item"]).name for f in result.failures] == ["broken_0.fits"]
    assert "OIFitsError" in result.failures[0]["error"]
    for p in result.products:
        assert Path(p.path).parent == out_dir.resolve()
        assert p.sha256 == sha256_file(p.path) == before[Path(p.path).name]  # identical bytes
        assert p.granules[0]["nb_vis2"] == 6 and p.granules[0]["night"] == night.name
    assert {p.name: sha256_file(p) for p in night.iterdir()} == before  # inputs untouched


def test_loose_files_go_to_the_night_of_their_data(tmp_path):
    f = make_file(tmp_path / "x.fits", mjd=60310.1)  # 2024-01-01T02:24 UTC, no site → night 2023-12-31
    with Catalog.for_root(tmp_path / "p") as cat:
        (unit,) = file_units([f], tmp_path / "p", 1, cat)
        result = ingest_unit(unit)
    assert Path(result.products[0].path) == (tmp_path / "p" / "2023-12-31" / "L1" / "x.fits").resolve()
    with pytest.raises(ConfigError, match="not found"):
        file_units([tmp_path / "missing.fits"], tmp_path / "p", 1, None)


def test_plan_redoes_only_what_changed(tmp_path):
    archive = tmp_path / "archive"
    nights = make_archive(archive, n_nights=3, files_per_night=1)
    root = tmp_path / "products"
    with Catalog.for_root(root) as cat:
        units = archive_units(archive, root, 2, cat)
        assert len(plan_units(units, cat).todo) == 3
        for u in units:
            _complete(cat, u, ingest_unit(u))
        db = root / "catalog.sqlite"
        db_sha = sha256_file(db)
        again = archive_units(archive, root, 2, cat)
        plan = plan_units(again, cat)
        assert plan.todo == [] and len(plan.skipped) == 3
        assert sha256_file(db) == db_sha  # an unchanged archive: no writes at all
        # one input changes → only its night
        make_file(nights[1] / "obs_00.fits", target="HD_0", seed=999)
        changed = plan_units(archive_units(archive, root, 2, cat), cat)
        assert [u.unit for u in changed.todo] == [nights[1].name]
        # a setting changes (level) → every night
        assert len(plan_units(archive_units(archive, root, 1, cat), cat).todo) == 3
        # a product disappears → its night again, even with the same key
        os.unlink(root / nights[2].name / "L2" / "obs_00.fits")
        assert nights[2].name in [u.unit for u in plan_units(archive_units(archive, root, 2, cat), cat).todo]
        assert len(plan_units(again, cat, force=True).todo) == 3


def test_cache_key_is_a_hash_not_a_path(tmp_path):
    (night,) = make_archive(tmp_path / "a", n_nights=1, files_per_night=1)
    with Catalog.for_root(tmp_path / "p") as cat:
        (unit,) = archive_units(tmp_path / "a", tmp_path / "p", 2, cat)
    assert len(unit.cache_key) == 64 and set(unit.cache_key) <= set("0123456789abcdef")
    assert code_version("oiflow.ingest").startswith("0.1.0+")


def test_code_version_hashes_sources_without_importing_them():
    """The flow process plans units (hashing each stage's code) without loading the stages'
    dependencies: same hash as the files on disk, and scipy/matplotlib stay unimported."""
    import subprocess
    import sys

    code = ("import sys; from oiflow.work.calibrate import calibrate_code_version as c; "
            "from oiflow.work.image import image_code_version as i; print(c(), i()); "
            "print(sorted(m for m in ('scipy', 'matplotlib', 'oiflow.calibrate', 'oiflow.image') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.splitlines()
    from oiflow.work.calibrate import calibrate_code_version
    from oiflow.work.image import image_code_version

    assert out[0] == f"{calibrate_code_version()} {image_code_version()}"
    assert out[1] == "[]"
    with pytest.raises(ConfigError, match="module not found: oiflow.nosuchstage"):
        code_version("oiflow.nosuchstage")


def test_remove_stale_temporaries_only_touches_temporaries(tmp_path):
    keep = tmp_path / "a.fits"
    keep.write_text("x")
    other = tmp_path / ".b.zz.fits.tmp"
    other.write_text("x")
    mine = tmp_path / ".a.xyz.fits.tmp"
    mine.write_text("x")
    assert remove_stale_temporaries(tmp_path, product="a.fits") == [mine]
    assert keep.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path) == [other]


def test_fit_and_image_units_leave_each_others_temporaries_alone(tmp_path):
    """A target's fit and image write into the same L3 directory, possibly at the same time on
    two workers: each clears only its own stale temporaries (the image's '.image.*.png.tmp' was
    deleted under it by the fit starting, on 2 workers)."""
    from oiflow.work import fit, image

    names = [".image.k2j.png.tmp", ".image.residuals.x1.png.tmp", ".fit_binary.q.json.tmp", ".fit_binary_v2.w.png.tmp",
             ".companion_maps.e.fits.tmp"]
    for n in names:
        (tmp_path / n).write_text("x")
    gone = sorted(p.name for p in remove_stale_temporaries(tmp_path, stems=fit.PRODUCT_STEMS))
    assert gone == [".companion_maps.e.fits.tmp", ".fit_binary.q.json.tmp", ".fit_binary_v2.w.png.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".image.k2j.png.tmp", ".image.residuals.x1.png.tmp"]
    assert len(remove_stale_temporaries(tmp_path, stems=image.PRODUCT_STEMS)) == 2
