"""The core stays free of the UI and the backends: checked in a fresh interpreter, not hoped."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import ccis_workbench.core


def _core_modules() -> list[str]:
    return [f"ccis_workbench.core.{m.name}" for m in pkgutil.iter_modules(ccis_workbench.core.__path__)]


def test_core_imports_neither_textual_nor_libvirt() -> None:
    modules = _core_modules()
    assert "ccis_workbench.core.compose" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('textual', 'libvirt', 'rich')"
        " or k.startswith(('ccis_workbench.ui', 'ccis_workbench.backends', 'ccis_workbench.cli')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"core pulled in: {out}"


def test_render_command_does_not_import_ui_or_libvirt() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from ccis_workbench.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): rc = main(['render', 'openstack-stream9'])\n"
        "assert rc == 0, rc\n"
        "print(','.join(sorted(k for k in sys.modules if k.split('.')[0] in ('textual', 'libvirt'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_import_linter_contract_is_kept() -> None:
    """The same rule, statically, over every import in the package (pyproject.toml [tool.importlinter])."""
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe)], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 kept, 0 broken" in res.stdout


#: What a cold `render` of one profile must not import: the faces, the backends, the other commands and the
#: libraries only they use.
RENDER_NEVER_IMPORTS = ("textual", "rich", "libvirt", "pexpect", "requests", "pygments", "ccis_workbench.ui",
                        "ccis_workbench.backends", "ccis_workbench.rehearsal", "ccis_workbench.flows.build",
                        "ccis_workbench.flows.matrix", "ccis_workbench.flows.propose", "ccis_workbench.core.koji",
                        "ccis_workbench.core.lint", "ccis_workbench.core.diff", "ccis_workbench.cli.build_cmds",
                        "ccis_workbench.cli.test_cmds", "ccis_workbench.cli.propose_cmds",
                        "ccis_workbench.cli.matrix_cmds", "ccis_workbench.cli.completion_cmds")


def test_cold_render_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    """`python -m ccis_workbench render PROFILE -o FILE` in a fresh interpreter, as a user runs it: the modules
    loaded by the end are checked (the parser is built from the render command's module alone)."""
    out = tmp_path / "ks.cfg"
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['ccis-workbench', 'render', 'openstack-stream9', '-o', {str(out)!r}]\n"
        "try:\n"
        "    runpy.run_module('ccis_workbench', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"bad = sorted(k for k in sys.modules if k.startswith({RENDER_NEVER_IMPORTS!r}))\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"render pulled in: {res.stdout.strip()}"
    assert out.read_text().startswith("#"), "render wrote no kickstart"


def test_command_owners_match_what_each_module_registers() -> None:
    """COMMAND_OWNERS (the one-module parser a named command gets) says the truth about every command."""
    import argparse
    import importlib

    from ccis_workbench.cli.main import COMMAND_MODULES, COMMAND_OWNERS, build_parser, command_in

    registered: dict[str, str] = {}
    for module in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        registered.update(dict.fromkeys(sub.choices, module))
    assert registered == COMMAND_OWNERS
    for command in COMMAND_OWNERS:
        parser = build_parser(command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert command in sub.choices
    assert command_in(["--catalog", "render", "list", "profiles"]) == "list"  # a catalog folder named render
    assert command_in(["--catalog=x", "render", "p"]) == "render"
    assert command_in(["--help"]) is None and command_in(["rendr"]) is None
    assert command_in([]) == "" and command_in(["--catalog", "x"]) == ""  # the TUI: no command module needed


#: What the TUI's first screen must not import: the catalog is loaded (YAML, Jinja2, pykickstart's version tables)
#: in a worker after the first frame, libvirt in the host check, the rest only by the screens that use them.
FIRST_SCREEN_NEVER_IMPORTS = ("yaml", "jinja2", "libvirt", "pexpect", "pygments", "requests", "pykickstart.version",
                              "pykickstart.handlers", "pykickstart.commands", "ccis_workbench.core.catalog",
                              "ccis_workbench.core.compose", "ccis_workbench.core.koji", "ccis_workbench.backends",
                              "ccis_workbench.rehearsal", "ccis_workbench.ui.engine", "ccis_workbench.cli.build_cmds",
                              "ccis_workbench.cli.compose_cmds", "ccis_workbench.ui.screens.build",
                              "ccis_workbench.ui.screens.review")


def test_tui_start_imports_only_what_the_first_screen_needs() -> None:
    """`ccis-workbench` with no command, in a fresh interpreter, up to the point the app would run: the parser
    registers no command module and the app's import pulls in none of the catalog's or the backends' libraries."""
    code = (
        "import sys\n"
        "import ccis_workbench.cli.main as m\n"
        "m.build_parser(m.command_in([]))\n"
        "import ccis_workbench.ui.app\n"
        f"bad = sorted(k for k in sys.modules if k.startswith({FIRST_SCREEN_NEVER_IMPORTS!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the first screen pulled in: {out}"
