"""`plan`, and the bad-input paths of `build`, through the real CLI (no libvirt needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from .test_plan import make_tree


def test_plan_text(cli, mini_catalog: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    r = cli("plan", "p", "--tree", str(tree), "--accel", "tcg", "--disk-size", "256M", root=mini_catalog)
    assert r.code == 0, r.err
    assert r.out.startswith("Build plan ") and "Install source: dir " in r.out
    assert "[REHEARSAL tree: not CentOS]" in r.out
    assert "Kernel command line: inst.ks=file:/ks.cfg inst.repo=http://{served}/ console=ttyS0,115200n8 inst.text" \
        in r.out
    assert "256 MiB  disk" in r.out and "<domain type='qemu'>" in r.out


def test_plan_json_is_the_domain_the_build_uses(cli, mini_catalog: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    r = cli("plan", "p", "--tree", str(tree), "--accel", "kvm", "--format", "qcow2", "--format", "vhd", "--json",
            root=mini_catalog)
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["domain_type"] == "kvm" and d["accel"] == "kvm"
    assert [a["filename"] for a in d["artifacts"]][:2] == ["p-rehearsal.x86_64.qcow2", "p-rehearsal.x86_64.vhd"]
    root = ET.fromstring(d["domain_xml"])
    assert root.findtext("name") == d["domain"] and d["domain"].startswith("ccis-p-")
    assert d["kickstart_sha256"] and d["source"]["tree"]["family"] == "CCIS Workbench rehearsal"


def test_plan_offline_release_tree_says_so(cli, mini_catalog: Path) -> None:
    r = cli("plan", "p", "--accel", "tcg", root=mini_catalog)
    assert r.code == 0, r.err
    assert "plan fetched nothing: a build reads" in r.out and "--tree rehearsal" in r.out
    assert "inst.repo=https://mirror.stream.centos.org/9-stream/BaseOS/x86_64/os/" in r.out


def test_bad_inputs_exit_2(cli, mini_catalog: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    r = cli("plan", "p", "--tree", str(tree), "--disk-size", "huge", root=mini_catalog)
    assert r.code == 2 and "Bad size" in r.err
    r = cli("plan", "p", "--tree", str(tmp_path / "nowhere"), root=mini_catalog)
    assert r.code == 2 and "neither a URL, a directory nor an ISO" in r.err
    r = cli("build", "p", "--tree", str(tmp_path), root=mini_catalog)
    assert r.code == 2 and "no .treeinfo" in r.err
    r = cli("plan", "p", "--tree", str(tree), "--format", "floppy", root=mini_catalog)
    assert r.code == 2 and "Unknown format" in r.err
