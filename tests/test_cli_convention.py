"""The command-line convention (README "Command-line conventions"), checked on every subcommand
of the ``oiflow`` app found by walking its click command tree, so that a new command is checked
without being listed here:

- ``-o/--out`` is the output path and no other option is ``-o``; its help says whether it is a
  file or a directory; an output file has ``--force`` (an existing one is replaced only then);
- ``--json`` is a switch (JSON on stdout); a JSON file is written with ``--json-out PATH``;
- no output is a positional argument;
- the README's and the --help examples use options that exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from oiflow.cli import app

REPO = Path(__file__).resolve().parents[1]


def leaf_commands(group=None, prefix=("oiflow",)):
    """(command path, click command) of every runnable subcommand of the app."""
    group = group if group is not None else typer.main.get_command(app)
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        if hasattr(cmd, "commands"):
            out += leaf_commands(cmd, path)
        else:
            out.append((" ".join(path), cmd))
    return out


COMMANDS = leaf_commands()
IDS = [p for p, _ in COMMANDS]


def options(cmd):
    return [p for p in cmd.params if p.opts and p.opts[0].startswith("-")]


def test_the_tree_holds_every_command():
    assert {"oiflow fit", "oiflow image", "oiflow run", "oiflow simulate night", "oiflow server start",
            "oiflow merge", "oiflow select"} <= set(IDS)
    assert len(IDS) == 19


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_minus_o_is_the_output_and_says_file_or_directory(path, cmd):
    for p in options(cmd):
        names = [*p.opts, *p.secondary_opts]
        if "-o" in names or "--out" in names:
            assert p.name == "out" and {"-o", "--out"} <= set(names), (path, names)
            help_text = p.help or ""
            assert help_text.startswith("Output"), (path, help_text)
            says = ("directory" in help_text, "file" in help_text.split("(")[0])
            assert any(says), (path, help_text)
            if not says[0]:  # one file: replaced only with --force
                assert "--force" in help_text and "force" in {q.name for q in cmd.params}, path


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_json_prints_and_json_out_writes(path, cmd):
    for p in options(cmd):
        for name in (*p.opts, *p.secondary_opts):
            if name == "--json":
                assert p.is_flag, f"{path}: --json is a switch"
            elif "json" in name:
                assert name == "--json-out" and not p.is_flag, f"{path}: {name}: a JSON file is --json-out PATH"
                assert "force" in {q.name for q in cmd.params}, f"{path}: --json-out needs --force"


#: commands with --json but no --json-out, and why
JSON_FILE_ELSEWHERE = {"oiflow quicklook": "its JSON is written as OUT/summary.json"}


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_a_command_with_json_has_both_switches(path, cmd):
    names = {n for p in options(cmd) for n in (*p.opts, *p.secondary_opts)}
    if "--json" in names and path not in JSON_FILE_ELSEWHERE:
        assert "--json-out" in names, path
    if "--json-out" in names:
        assert "--json" in names, path


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_no_output_is_a_positional_argument(path, cmd):
    for p in cmd.params:
        if not (p.opts and p.opts[0].startswith("-")):
            assert p.name not in ("out", "output", "dest", "target_file"), (path, p.name)
            assert "output" not in (p.help or "").lower(), (path, p.help)


def _parse(words: list[str]) -> None:
    """Parse an ``oiflow ...`` command line's options as the app would (unknown option or
    command: an error), without converting or checking the values."""
    group = typer.main.get_command(app)
    cmd, rest = group, list(words)
    while hasattr(cmd, "commands"):
        while rest and rest[0].startswith("-"):  # the root options (--debug, -v) take no value
            rest.pop(0)
        assert rest and rest[0] in cmd.commands, f"unknown command in {words}"
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    ctx = type(group.make_context("oiflow", [], resilient_parsing=True))(cmd, info_name=cmd.name)  # click's Context
    cmd.make_parser(ctx).parse_args(args=rest)


def _readme_commands() -> list[str]:
    """The ``oiflow ...`` command lines of the README's indented code blocks."""
    lines, out = (REPO / "README.md").read_text().splitlines(), []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if lines[i].startswith("    ") and text.startswith("oiflow "):
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            out.append(text)
        i += 1
    return out


README_COMMANDS = _readme_commands()


def _words(line: str) -> list[str]:
    line = re.sub(r"\s+#.*$", "", line)  # a comment
    line = re.sub(r"\[[^\]]*\]", "", line)  # [optional parts] of a synopsis
    return shlex.split(line)[1:]


@pytest.mark.parametrize("line", README_COMMANDS)
def test_readme_commands_use_options_that_exist(line):
    _parse(_words(line))


def test_the_readme_has_the_examples_and_the_conventions_section():
    assert len(README_COMMANDS) >= 25
    text = (REPO / "README.md").read_text()
    section = text.split("## Command-line conventions", 1)[1].split("\n## ", 1)[0]
    for rule in ("-o/--out", "--json-out", "--force", "--debug", "exit code"):
        assert rule in section, rule


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_help_examples_use_options_that_exist(path, cmd):
    for example in re.findall(r"(?:Example|Examples): (oiflow [^\n]+)", cmd.help or ""):
        _parse(_words(example))


def test_an_unknown_option_fails_the_parse():
    with pytest.raises(Exception, match="--plot"):
        _parse(["fit", "x.fits", "--plot", "out/"])


def test_the_submit_example_names_a_deployment_of_the_shipped_file():
    from oiflow.flows.deployment_specs import load_deployments

    cmd = dict(COMMANDS)["oiflow submit"]
    name = re.search(r"Example: oiflow submit (\S+)", cmd.help).group(1)
    names = {f"{s.flow_name}/{s.name}" for s in load_deployments(REPO / "configs/deployments.yaml")}
    assert name in names, (name, names)
