"""Shared fixtures: the repository catalog, a small private catalog for bad-input tests, a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# libvirtd started on demand, the rehearsal tree built once and served on 127.0.0.1, leftover checks
pytest_plugins = ["tests.fixtures_libvirt"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def catalog():
    from ccis_workbench.core.catalog import Catalog

    return Catalog.load(REPO)


@pytest.fixture
def mini_catalog(tmp_path: Path) -> Path:
    """A private catalog: a frozen copy of the Stream 9 release, baseline and openstack target
    (tests/data/mini_catalog, so that edits to the shipped catalog do not move these tests), plus two overlays."""
    root = tmp_path / "catalog"
    shutil.copytree(REPO / "tests/data/mini_catalog", root)
    ov = root / "kickstarts/overlays"
    ov.mkdir(parents=True, exist_ok=True)
    (ov / "alpha.yaml").write_text(
        "name: alpha\ntitle: Alpha\npackages: [htop]\nservices:\n  disabled: [chronyd]\n"
        "kernel_args: [quiet, -no_timer_check]\nconflicts: [beta]\n")
    (ov / "alpha.ks.j2").write_text("timezone Europe/Brussels --utc\n%post\necho alpha {{ vars.hostname }}\n%end\n")
    (ov / "beta.yaml").write_text("name: beta\ntitle: Beta\npackages: [-rsync]\n")
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles/p.yaml").write_text(
        "name: p\nrelease: centos-stream-9\ntarget: openstack\noverlays: [alpha]\nvariables:\n"
        "  hostname: node1.example.com\n  extra_packages: [vim-enhanced, -tar]\nkickstart: |\n"
        "  selinux --permissive\n  %post --nochroot\n  echo profile\n  %end\n")
    return root


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli():
    """Run the real CLI in a subprocess (what a user types), optionally against another catalog root."""

    def run(*args: str, root: Path | None = None, cwd: Path | None = None) -> Run:
        env = dict(os.environ)
        # --catalog: the working directory (this checkout is a catalog) would win over $CCIS_WORKBENCH_ROOT
        catalog = ["--catalog", str(root)] if root is not None else []
        proc = subprocess.run([sys.executable, "-m", "ccis_workbench", *catalog, *args], capture_output=True,
                              text=True,
                              env=env, cwd=cwd or REPO, timeout=120, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def ksvalidator() -> str:
    path = shutil.which("ksvalidator") or str(Path(sys.executable).with_name("ksvalidator"))
    assert Path(path).exists(), "pykickstart's ksvalidator is not installed"
    return path
