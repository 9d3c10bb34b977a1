"""The oiflow command imports only the module of the command it runs (start-up time)."""

import subprocess
import sys
from pathlib import Path

from oiflow.cli import COMMAND_MODULES, COMMANDS, app

REPO = Path(__file__).resolve().parents[1]


def test_every_command_is_mapped_to_the_module_that_registers_it():
    import importlib

    import typer

    for module in COMMAND_MODULES:
        sub = typer.Typer()
        importlib.import_module(f"oiflow.cli.{module}").register(sub)
        names = {c.name for c in sub.registered_commands} | {g.name for g in sub.registered_groups}
        assert names == {name for name, mod in COMMANDS.items() if mod == module}, module
    assert {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups} == set(COMMANDS)


def test_the_image_command_loads_neither_the_catalogue_nor_scipy():
    code = ("import sys\nfrom oiflow.cli import main\nrc = main(['image', '--help'])\n"
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'scipy', 'matplotlib', 'prefect'}),"
            " sorted(m for m in sys.modules if m.startswith('oiflow.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last == "0 [] ['oiflow.cli.image_cmds']", last
