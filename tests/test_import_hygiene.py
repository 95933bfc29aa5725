"""The core stays free of the UI and the backends: checked in a fresh interpreter, not hoped."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
    from pathlib import Path

    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe)], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 kept, 0 broken" in res.stdout
