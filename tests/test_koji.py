"""koji image-build: the config file is read by the koji client's own code (koji_cli.commands.handle_image_build,
from the koji package on PyPI) for every shipped profile, and the kickstart for koji is the local one with
koji's final command and without the url/repo lines koji supplies itself."""

from __future__ import annotations

import difflib
import optparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccis_workbench.core import koji
from ccis_workbench.core.compose import Composer
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.lint import lint_text
from ccis_workbench.core.model import FORMATS

koji_cli = pytest.importorskip("koji_cli.commands", reason="the koji client (pip install koji) is not installed")

TAG = "20261126"


class FakeHub:
    """Stands in for the koji hub (no network): records what the client would send."""

    def __init__(self) -> None:
        self.uploads: list[str] = []
        self.calls: list[tuple[Any, ...]] = []

    def getBuildTarget(self, name: str) -> dict[str, Any]:
        return {"name": name, "dest_tag": 1, "dest_tag_name": "dest"}

    def getTag(self, tag: Any) -> dict[str, Any]:
        return {"id": 1, "name": "dest"}

    def uploadWrapper(self, path: str, serverdir: str, callback: Any = None) -> None:
        Path(path).read_bytes()  # the client uploads the local kickstart: it must exist
        self.uploads.append(path)

    def buildImageOz(self, name: str, version: str, arches: list[str], target: str, install_tree: str,
                     opts: dict[str, Any], priority: Any = None) -> int:
        self.calls.append((name, version, arches, target, install_tree, opts))
        return 1

    def logout(self) -> None:
        pass


class ClientRefused(Exception):
    pass


def koji_client_reads(config: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeHub, optparse.OptionParser]:
    """Run the real `koji image-build --config FILE --scratch` code up to the hub call."""
    parsers: list[optparse.OptionParser] = []

    class RecordingParser(optparse.OptionParser):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            parsers.append(self)

        def error(self, msg: str) -> Any:  # optparse would sys.exit(2)
            raise ClientRefused(msg)

    monkeypatch.setattr(koji_cli, "OptionParser", RecordingParser)
    monkeypatch.setattr(koji_cli, "activate_session", lambda session, options: None)
    monkeypatch.setattr(koji_cli, "_running_in_bg", lambda: True)
    hub = FakeHub()
    options = optparse.Values({"quiet": True, "weburl": "http://koji.invalid", "poll_interval": 5,
                               "topurl": "http://koji.invalid"})
    koji_cli.handle_image_build(options, hub, ["--config", str(config), "--scratch", "--nowait"])
    return hub, parsers[0]


def client_formats(parser: optparse.OptionParser) -> set[str]:
    """The format names the client documents in its own --format help."""
    help_text = parser.get_option("--format").help
    inside = help_text[help_text.index("(") + 1:help_text.index(")")]
    return {f.strip() for f in inside.split(",")}


def write_koji_files(comp: Any, folder: Path) -> tuple[Path, Path, koji.ImageBuildConfig]:
    ks_name, ini_name = koji.koji_files(comp, tag=TAG)
    ks_path = folder / ks_name
    ks_path.write_text(koji.koji_kickstart(comp))
    cfg = koji.image_build_config(comp, kickstart=str(ks_path), tag=TAG)
    ini = folder / ini_name
    ini.write_text(cfg.to_ini(comment="test"))
    return ks_path, ini, cfg


def test_every_shipped_profile_is_accepted_by_the_koji_client(catalog: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    names = catalog.profile_names()
    assert names, "the catalog ships no profile"
    composer = Composer(catalog)
    for name in names:
        comp = composer.compose(catalog.load_profile(name))
        folder = tmp_path / name
        folder.mkdir()
        ks_path, ini, cfg = write_koji_files(comp, folder)
        hub, parser = koji_client_reads(ini, monkeypatch)
        assert hub.uploads == [str(ks_path)], name
        (nm, version, arches, target, tree, opts), = hub.calls
        assert (nm, version, arches, target, tree) == (cfg.name, cfg.version, cfg.arches, cfg.target,
                                                       comp.release.tree_url(comp.variables["arch"])), name
        assert opts["scratch"] is True and opts["distro"] == cfg.distro and opts["ksversion"] == comp.version
        assert opts["format"] and set(opts["format"]) <= client_formats(parser), (name, opts["format"])
        release_repos = [r.url.format(arch=comp.variables["arch"]) for r in comp.release.repos]
        assert opts["repo"][:len(release_repos)] == release_repos, name
        merged = comp.handler.repo.repoList
        assert len(opts["repo"]) + len(cfg.notes) == len(merged), "every repo is carried or said to be missing"
        assert int(opts["disk_size"]) == comp.variables["disk_size"]
        assert opts["release"] == TAG
        known = {o.dest for o in parser.option_list if o.dest} | set(koji.POSITIONAL_KEYS) | {"can_fail"}
        assert {k for k, _ in cfg.options()} <= known, "every key is one of the client's own option names"


def test_every_workbench_format_maps_to_a_koji_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = koji.ImageBuildConfig(name="CentOS-Stream-x", version="9", target="t", install_tree="http://x/os/",
                                arches=["x86_64"], formats=["qcow2"], distro="CentOS-9.0", ksversion="RHEL9",
                                disk_size=10, kickstart=str(tmp_path / "x.ks"))
    (tmp_path / "x.ks").write_text("text\n")
    (tmp_path / "c.ini").write_text(cfg.to_ini())
    _, parser = koji_client_reads(tmp_path / "c.ini", monkeypatch)
    known = client_formats(parser)
    assert set(koji.KOJI_KNOWN_FORMATS) == known, "our copy of the client's format list is current"
    for fmt in FORMATS:
        assert koji.koji_format(fmt, "openstack") in known, fmt
    assert koji.koji_format("ova", "ovirt") == "rhevm-ova"
    assert koji.koji_format("vhd", "aws") == "vpc"


def test_values_koji_would_misread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.ks").write_text("text\n")
    cfg = koji.ImageBuildConfig(name="CentOS-Stream-x", version="9", target="t", install_tree="http://h/a%20b/os/",
                                arches=["x86_64"], formats=["qcow2"], distro="CentOS-9.0", ksversion="RHEL9",
                                disk_size=10, kickstart=str(tmp_path / "x.ks"), repos=["http://h/100%25/"])
    (tmp_path / "c.ini").write_text(cfg.to_ini())
    hub, _ = koji_client_reads(tmp_path / "c.ini", monkeypatch)
    (_, _, _, _, tree, opts), = hub.calls
    assert tree == "http://h/a%20b/os/" and opts["repo"] == ["http://h/100%25/"], "'%' survives ConfigParser"
    for bad in ({"repos": ["http://h/a,b/"]}, {"release": "2026-11-26"}, {"target": "a\nb"}, {"formats": ["iso"]}):
        broken = koji.ImageBuildConfig(**{**cfg.__dict__, **bad})
        with pytest.raises(WorkbenchError):
            broken.to_ini()


def test_the_client_refuses_a_config_without_distro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness really runs the client's checks (a negative control)."""
    (tmp_path / "c.ini").write_text("[image-build]\nname = x\nversion = 9\ntarget = t\ninstall_tree = http://h/\n"
                                    "arches = x86_64\nkickstart = x.ks\n")
    with pytest.raises(ClientRefused, match="distro"):
        koji_client_reads(tmp_path / "c.ini", monkeypatch)


def test_koji_kickstart_reboots_and_leaves_the_tree_to_koji(catalog: Any) -> None:
    composer = Composer(catalog)
    for name in catalog.profile_names():
        comp = composer.compose(catalog.load_profile(name))
        text = koji.koji_kickstart(comp)
        lines = text.splitlines()
        assert "reboot" in lines and not any(ln.startswith(("url ", "repo ", "shutdown", "poweroff")) for ln in lines)
        ids = {f.id for f in lint_text(text, comp.version, target=comp.target, backend="koji")
               if f.severity == "error" and not f.waived}
        assert "CCIS170" not in ids and not any(i.startswith("KS") for i in ids), (name, ids)
        diff = [ln for ln in difflib.unified_diff(comp.text.splitlines(), lines, lineterm="", n=0)
                if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]
        removed = [ln[1:] for ln in diff if ln.startswith("-") and not ln.startswith("-#")]
        added = [ln[1:] for ln in diff if ln.startswith("+") and not ln.startswith("+#")]
        assert added == ["reboot"], (name, added)
        assert all(re.match(r"(url|repo|shutdown|poweroff|halt)\b", ln) for ln in removed), (name, removed)


def test_cli_writes_files_and_prints_the_exact_command(tmp_path: Path, catalog: Any) -> None:
    name = catalog.profile_names()[0]
    out = tmp_path / "koji"
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "koji", name, "-o", str(out), "--tag", TAG,
                           "--koji-target", "cloudinstance9s-images-main-el9s"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ini = next(out.glob("*.koji.ini"))
    assert proc.stdout.splitlines()[-1] == f"koji image-build --config {ini} --scratch"
    ks = next(out.glob("*.ks"))
    assert ks.name.startswith("CentOS-") and ks.name.endswith(f"-{TAG}.ks")
    assert f"kickstart = {ks.resolve()}" in ini.read_text()
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "koji", name, "-o", str(out), "--tag", "1-2"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and "Bad tag" in proc.stderr
