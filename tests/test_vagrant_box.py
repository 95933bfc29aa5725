"""The Vagrant box the workbench builds is accepted by the real client: `vagrant box add` (vagrant-libvirt).

One rehearsal build of the repository's vagrant-stream9 profile (format vagrant-libvirt, 96 MiB disk, TCG) runs
once for this module, from the rehearsal tree served on 127.0.0.1. Vagrant runs with VAGRANT_HOME in a
temporary directory, so nothing touches ~/.vagrant.d. Needs `vagrant` and `vagrant-libvirt` (Debian packages of
the same names); skipped only when the vagrant binary is missing.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_libvirt import leftovers

REPO = Path(__file__).resolve().parents[1]
VAGRANT = shutil.which("vagrant")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow,
              pytest.mark.skipif(VAGRANT is None, reason="vagrant is not installed "
                                 "(apt-get install vagrant vagrant-libvirt)")]


@pytest.fixture(scope="module")
def vagrant_box(libvirt_uri: str, rehearsal_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .box of one rehearsal build of profiles/vagrant-stream9.yaml (built once for this module)."""
    from ccis_workbench.backends.libvirt_build import Build
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.installsource import from_url
    from ccis_workbench.core.plan import PlanOptions, make_plan
    from ccis_workbench.rehearsal.httpserver import TreeServer

    work = tmp_path_factory.mktemp("vagrant-build")
    cat = Catalog.load(REPO)
    profile = cat.load_profile("vagrant-stream9")
    comp = Composer(cat).compose(profile)
    assert comp.target is not None and comp.target.name == "vagrant"
    before = set(leftovers(libvirt_uri))
    with TreeServer(rehearsal_tree) as srv:
        src = from_url(srv.url, cache=work / "cache")
        plan = make_plan(comp, profile.name, src, PlanOptions(
            accel="tcg", disk_size_mb=96, memory_mb=512, formats=["vagrant-libvirt"],
            output_dir=str(work / "artifacts"), inactivity_timeout=60.0, total_timeout=240.0))
        art = Build(plan).run()
    assert not [n for n in set(leftovers(libvirt_uri)) - before if plan.build_id in n]
    (box,) = art.glob("*.vagrant-libvirt.box")
    return box


@pytest.fixture
def vagrant_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for the vagrant client: a private VAGRANT_HOME, no version check over the network."""
    home = tmp_path / "vagrant.d"
    env = dict(os.environ, VAGRANT_HOME=str(home), VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1")
    yield env


def vagrant(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real vagrant client (in *cwd*: an empty directory, so no Vagrantfile is picked up)."""
    assert VAGRANT is not None
    return subprocess.run([VAGRANT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def box_names(env: dict[str, str], cwd: Path) -> list[str]:
    proc = vagrant(env, cwd, "box", "list")
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def test_box_layout(vagrant_box: Path) -> None:
    """metadata.json says libvirt/qcow2 with the size in whole GB; box.img is the installed disk."""
    with tarfile.open(vagrant_box, "r:gz") as tf:
        assert sorted(tf.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        meta = json.load(tf.extractfile("metadata.json"))  # type: ignore[arg-type]
        vagrantfile = tf.extractfile("Vagrantfile").read().decode()  # type: ignore[union-attr]
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 1}
    assert "config.vm.provider :libvirt" in vagrantfile


def test_vagrant_box_add_list_remove(vagrant_box: Path, vagrant_env: dict[str, str], tmp_path: Path) -> None:
    name = f"ccis-test-{secrets.token_hex(4)}"
    add = vagrant(vagrant_env, tmp_path, "box", "add", "--name", name, str(vagrant_box))
    assert add.returncode == 0, add.stdout + add.stderr
    assert f"Successfully added box '{name}' (v0) for 'libvirt'" in add.stdout
    assert f"{name} (libvirt, 0)" in box_names(vagrant_env, tmp_path)
    # what vagrant unpacked is a qcow2 of the build's disk size (the file vagrant-libvirt uploads to its pool)
    img = Path(vagrant_env["VAGRANT_HOME"], "boxes", name, "0", "libvirt", "box.img")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 96 << 20
    remove = vagrant(vagrant_env, tmp_path, "box", "remove", name, "--provider", "libvirt")
    assert remove.returncode == 0, remove.stdout + remove.stderr
    assert not [b for b in box_names(vagrant_env, tmp_path) if b.startswith(name + " ")]
    assert not (Path(vagrant_env["VAGRANT_HOME"]) / "boxes" / name).exists()


def test_vagrant_refuses_a_box_with_broken_metadata(vagrant_box: Path, vagrant_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """The same box with metadata.json cut short: vagrant refuses it and keeps nothing."""
    broken = tmp_path / "broken.box"
    with tarfile.open(vagrant_box, "r:gz") as src, tarfile.open(broken, "w:gz", compresslevel=1) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "metadata.json":
                data = data[: len(data) // 2]  # '{"provider": "libvirt", "for' : not JSON any more
                with pytest.raises(json.JSONDecodeError):
                    json.loads(data)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    name = f"ccis-test-{secrets.token_hex(4)}"
    add = vagrant(vagrant_env, tmp_path, "box", "add", "--name", name, str(broken))
    assert add.returncode != 0, add.stdout
    assert f"The metadata associated with the box '{name}' appears corrupted" in add.stderr, add.stderr
    assert not [b for b in box_names(vagrant_env, tmp_path) if b.startswith(name + " ")]


def test_boot_test_adds_the_box_boots_it_and_logs_in_as_vagrant(vagrant_box: Path, libvirt_uri: str,
                                                                 tmp_path: Path) -> None:
    """`boot-test` of the build's box: `vagrant box add` (a check of its own), then box.img boots and the harness
    logs in as the kickstart's public vagrant user (the box takes no seed) and runs the vagrant checks as root."""
    import sys

    before = (vagrant_box.stat().st_mtime_ns, vagrant_box.stat().st_size)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(vagrant_box.parent), "--accel",
                           "tcg", "--quiet", "-o", str(out), "--workdir", str(tmp_path)], capture_output=True,
                          text=True, timeout=900, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status["artifact.vagrant-box-add"] == "passed"
    assert report["seed"] == "none" and report["user"] == "vagrant"
    assert any("logged in as vagrant" in n for n in report["notes"])
    assert not any("sudo did not work" in n for n in report["notes"]), "the checks ran as root"
    assert {i for i, s in status.items() if i.startswith("vagrant.") and s == "passed"} >= {
        "vagrant.user", "vagrant.insecure-key", "vagrant.key-permissions", "vagrant.sudo"}
    assert status["derived.services-enabled"] == "passed"
    assert (vagrant_box.stat().st_mtime_ns, vagrant_box.stat().st_size) == before, "the box is never written"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ccis-boot-test-disk-")] == []
    assert not [n for n in leftovers(libvirt_uri) if report["domain"] in n]
