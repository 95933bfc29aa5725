"""The workbench installed the usual way (a wheel in a fresh virtualenv, no checkout): the catalog, the rehearsal
files and the TUI stylesheet travel in the wheel; `list`, `render`, `init` and the TUI work from an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TUI_START = """
import asyncio
from ccis_workbench.ui.app import WorkbenchApp
from ccis_workbench.flows.settings import Settings
from ccis_workbench.ui.capabilities import FixedCapabilities

async def main():
    root = Settings.load().catalog_root()  # as `ccis-workbench` with no command resolves it
    app = WorkbenchApp(str(root.path), capabilities=FixedCapabilities())
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(4):
            await app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.compose_screen
        print("TUI up:", type(app.screen).__name__, screen.workbench is not None, root.why)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (its dependencies come from the test environment)."""
    work = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "artifacts", "__pycache__",
                                                             "*.egg-info", ".*_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
                            str(src)], capture_output=True, text=True, check=False, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((work / "dist").glob("ccis_workbench-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the test environment's packages (textual, pykickstart, ...), not its editable checkout of the workbench
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    inst = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, check=False)
    assert inst.returncode == 0, inst.stderr
    return venv


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd / ".config"),
           # the compiled-template cache goes beside the working folder, not into a catalog it may be
           "XDG_CACHE_HOME": str(cwd.parent / f".cache-{cwd.name}"),
           "GIT_AUTHOR_NAME": "T", "GIT_COMMITTER_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_EMAIL": "t@example.com", "LANG": os.environ.get("LANG", "C.UTF-8")}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)


def test_wheel_works_outside_any_checkout(installed: Path, tmp_path: Path) -> None:
    exe = str(installed / "bin/ccis-workbench")
    where = run(installed, tmp_path, str(installed / "bin/python"), "-c",
                "import ccis_workbench, sys; print(ccis_workbench.__file__)")
    assert str(REPO) not in where.stdout and str(installed) in where.stdout, where.stdout  # not this checkout
    config = run(installed, tmp_path, exe, "config")
    assert config.returncode == 0, config.stderr
    assert "share/ccis-workbench/catalog (shipped with the package)" in config.stdout
    listed = run(installed, tmp_path, exe, "list", "profiles")
    assert listed.returncode == 0 and "openstack-stream9" in listed.stdout, listed.stderr
    rendered = run(installed, tmp_path, exe, "render", "openstack-stream9")
    assert rendered.returncode == 0 and "#version=RHEL9" in rendered.stdout, rendered.stderr
    refused = run(installed, tmp_path, exe, "propose", "openstack-stream9", "--allow-missing")
    assert refused.returncode == 2 and "read-only" in refused.stderr and "init DIR" in refused.stderr
    tui = run(installed, tmp_path, str(installed / "bin/python"), "-c", TUI_START)
    assert tui.returncode == 0, tui.stderr[-3000:]
    assert "TUI up: ComposeScreen True shipped with the package" in tui.stdout
    tree = run(installed, tmp_path, str(installed / "bin/python"), "-c",
               "from importlib.resources import files; print(files('ccis_workbench.rehearsal') / 'files' / 'sudo.c')")
    assert Path(tree.stdout.strip()).is_file()


def test_init_makes_a_catalog_of_ones_own(installed: Path, tmp_path: Path) -> None:
    exe = str(installed / "bin/ccis-workbench")
    made = run(installed, tmp_path, exe, "init", "mine")
    assert made.returncode == 0, made.stderr
    mine = tmp_path / "mine"
    log = subprocess.run(["git", "-C", str(mine), "log", "--oneline"], capture_output=True, text=True, check=True)
    assert "Catalog created by ccis-workbench init" in log.stdout
    config = run(installed, mine / "profiles", exe, "config")
    assert f"{mine} (working directory)" in config.stdout
    again = run(installed, tmp_path, exe, "init", "mine")
    assert again.returncode == 2 and "Folder not empty" in again.stderr
    small = run(installed, tmp_path, exe, "init", "--minimal", "small")
    assert small.returncode == 0, small.stderr
    rendered = run(installed, tmp_path / "small", exe, "render", "openstack-stream9")
    assert rendered.returncode == 0, rendered.stderr
    proposed = run(installed, tmp_path / "small", exe, "propose", "openstack-stream9", "--allow-missing",
                   "--tag", "20261205")
    assert proposed.returncode == 0, proposed.stderr
    branches = subprocess.run(["git", "-C", str(tmp_path / "small"), "branch", "--list", "propose/*"],
                              capture_output=True, text=True, check=True).stdout
    assert "propose/openstack-stream9" in branches
