"""One YAML loader (oiflow.config.load_yaml) and one validation message: every problem of a
YAML file oiflow reads is a ConfigError line ``file: key.path: problem``, each problem once."""

from __future__ import annotations

import pytest

from oiflow.cli import main
from oiflow.config import RunConfig, load_config, load_yaml, validate
from oiflow.errors import ConfigError


def _error(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


def test_each_problem_once_with_its_key_path(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("reduce: {backend: nativ, frame_selecton: {min_snr: 2}}\n"
                   "image: {targets: {HD_X: {mu: lots, npix: 4}}}\n"
                   "input: {files: one.fits}\n")
    lines = _error(load_config, bad).splitlines()
    assert sorted(lines) == sorted([
        f"{bad}: reduce.backend: should be 'native', 'amdlib' or 'pndrs' (got 'nativ')",
        f"{bad}: reduce.frame_selecton: unknown key (did you mean 'frame_selection'?)",
        # a union (float | 'auto'): one line, not one per member
        f"{bad}: image.targets.HD_X.mu: should be a valid number, unable to parse string as a number or 'auto' "
        f"(got 'lots')",
        f"{bad}: image.targets.HD_X.npix: should be greater than or equal to 8 (got 4)",
        f"{bad}: input.files: should be a valid list (got 'one.fits')",
    ])


def test_unknown_key_without_a_near_name_lists_the_known_ones(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("catalog: {adress: x, zzz: 1}\n")
    lines = _error(load_config, bad).splitlines()
    assert f"{bad}: catalog.zzz: unknown key (known: url)" in lines and len(lines) == 2


def test_yaml_problems_name_the_file_and_line(tmp_path):
    cases = {
        "fit:\n  targets: {}\nfit:\n  targets: {}\n": "line 3, column 1: duplicate key 'fit'",
        "reduce: {backend: native\n": "line 2, column 1: expected ',' or '}', but got '<stream end>'",
        "- a\n- b\n": "the top level must be a mapping (key: value), not a list",
        "reduce:\n  backend: native\n    runner: local\n": "line 3, column 11: mapping values are not allowed here",
    }
    for text, problem in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        message = _error(load_yaml, bad)
        assert message.startswith(f"{bad}: {problem}"), message
        assert "\n" not in message
    assert load_yaml(tmp_path / "bad.yaml", text="") == {}
    assert load_yaml("x", text="a: &d {b: 1}\nc: {<<: *d, e: 2}\n") == {"a": {"b": 1}, "c": {"b": 1, "e": 2}}


def test_unreadable_files(tmp_path):
    assert _error(load_yaml, tmp_path / "none.yaml") == f"{tmp_path / 'none.yaml'}: file not found"
    assert _error(load_yaml, tmp_path) == f"{tmp_path}: is a directory, not a YAML file"
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert _error(load_yaml, binary) == f"{binary}: not a text (YAML) file"


def test_validate_with_a_key_prefix():
    message = _error(validate, RunConfig, {"output": {"rot": "p"}}, "deploy.yaml", "deployments.0.parameters.config")
    assert message == "deploy.yaml: deployments.0.parameters.config.output.rot: unknown key (did you mean 'root'?)"


def _cluster(path):
    from oiflow.cluster import load_profile

    return load_profile(path)


def _night(path):
    from oiflow.simulate.night import NightConfig

    return NightConfig.from_yaml(path)


def _model(path):
    from oiflow.fit.model import parse_model

    return parse_model(str(path))


def _deployments(path):
    from oiflow.flows.deployments import load_deployments

    return load_deployments(path)


def _fit_settings(path):
    from oiflow.config import FitTarget
    from oiflow.work.fit import fit_settings

    return fit_settings("HD_X", FitTarget(model=path))


@pytest.mark.parametrize("reader", [load_config, _cluster, _night, _model, _deployments, _fit_settings],
                         ids=["run", "cluster", "night", "model", "deployments", "fit-target"])
def test_every_yaml_reader_goes_through_the_loader(tmp_path, reader):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\n")
    assert _error(reader, bad) == f"{bad}: line 2, column 1: duplicate key 'a'"


def test_models_of_a_reader_give_key_paths(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("kind: pbs\nn_worker: 2\n")
    assert sorted(_error(_cluster, cluster).splitlines()) == [
        f"{cluster}: kind: should be 'local', 'slurm', 'oar' or 'address' (got 'pbs')",
        f"{cluster}: n_worker: unknown key (did you mean 'n_workers'?)",
    ]
    night = tmp_path / "night.yaml"
    night.write_text("night: 2023-03-15\nseed: x\ntargets: {}\nsequence: {order: []}\n")
    assert _error(_night, night) == (f"{night}: seed: should be a valid integer, unable to parse string as an "
                                     f"integer (got 'x')")
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text("deployments:\n  - name: d\n    flow: run_pipeline\n"
                           "    parameters: {config: {output: {rot: p}}}\n")
    assert _error(_deployments, deployments) == (f"{deployments}: deployments.0.parameters.config.output.rot: "
                                                 f"unknown key (did you mean 'root'?)")


def test_the_command_line_prints_each_problem_once(tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("image: {targets: {HD_X: {mu: lots}}}\n")
    assert main(["run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("image.targets.HD_X.mu") == 1 and "Traceback" not in err and "pydantic" not in err
    assert err.strip() == (f"error: {bad}: image.targets.HD_X.mu: should be a valid number, unable to parse "
                           f"string as a number or 'auto' (got 'lots')")
