"""Verifiable images on a real rehearsal build (libvirtd, qemu TCG) signed with a throwaway GnuPG key: the build
verifies; a flipped byte, a changed kickstart, a CHECKSUM re-signed with another key and a removed SBOM each fail
naming the problem; the SBOM validates with spdx-tools and lists what packages.txt lists; publish twice, then
verify the published tree over HTTP on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", *args], capture_output=True, text=True,
                          check=True).stdout


def make_key(home: Path, uid: str) -> tuple[str, Path]:
    """A new key in *home*; (fingerprint, an exported public keyring for gpgv)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    fpr = next(line.split(":")[9] for line in gpg(home, "--with-colons", "--list-keys", uid).splitlines()
               if line.startswith("fpr:"))
    keyring = home / "pub.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--homedir", str(home), "--export", fpr], capture_output=True,
                                       check=True).stdout)
    return fpr, keyring


@pytest.fixture(scope="module")
def catalog_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini catalog as a git repository (the attestation names its commit)."""
    root = tmp_path_factory.mktemp("vcat") / "catalog"
    shutil.copytree(REPO / "tests/data/mini_catalog", root)
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles/p.yaml").write_text("name: p\nrelease: centos-stream-9\ntarget: openstack\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "catalog"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def signed_build(tmp_path_factory: pytest.TempPathFactory, catalog_repo: Path, rehearsal_tree: Path,
                 libvirt_uri: str) -> tuple[Path, Path, dict[str, str]]:
    """(artifact folder, public keyring, environment) of one signed rehearsal build."""
    work = tmp_path_factory.mktemp("signed")
    fpr, keyring = make_key(work / "gnupg", "CCIS Test Signer <signer@example.org>")
    env = dict(os.environ, GNUPGHOME=str(work / "gnupg"), XDG_CACHE_HOME=str(work / "cache"))
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "--catalog", str(catalog_repo), "build", "p",
                           "--tree", str(rehearsal_tree), "--accel", "tcg", "--disk-size", "96M", "--memory", "512",
                           "--output", str(work / "out"), "--sign-key", fpr, "--quiet"],
                          capture_output=True, text=True, env=env, cwd=work, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next((work / "out").iterdir()), keyring, env


def verify(target: str, *args: str, catalog: Path | None = None, env: dict[str, str] | None = None) \
        -> tuple[int, dict]:
    cat = ["--catalog", str(catalog)] if catalog else []
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", *cat, "verify", target, "--json", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def failed(report: dict) -> dict[str, str]:
    return {f["check"]: f["detail"] for f in report["findings"] if not f["ok"]}


def test_signed_build_verifies(signed_build: tuple[Path, Path, dict[str, str]], catalog_repo: Path) -> None:
    folder, keyring, _ = signed_build
    for name in ("CHECKSUM", "CHECKSUM.asc", "sbom.spdx.json", "provenance.intoto.json", "manifest.json"):
        assert (folder / name).is_file(), name
    code, report = verify(str(folder), "--keyring", str(keyring), catalog=catalog_repo)
    assert code == 0, failed(report)
    assert report["verified"] and report["signed"] and report["rehearsal"]
    checks = {f["check"] for f in report["findings"]}
    assert {"signature", "sbom", "attestation", "kickstart", "recompose"} <= checks
    st = json.loads((folder / "provenance.intoto.json").read_text())
    params = st["predicate"]["buildDefinition"]["externalParameters"]
    head = subprocess.run(["git", "-C", str(catalog_repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert params["catalog"]["commit"] == head and params["catalog"]["dirty"] is False
    assert params["rehearsal"] is True and "rehearsal" in st["predicate"]["runDetails"]["builder"]["id"]
    deps = {d["name"] for d in st["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert {".treeinfo", "kernel", "initrd"} <= deps


def test_sbom_validates_and_lists_the_installed_packages(signed_build: tuple[Path, Path, dict[str, str]]) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    from ccis_workbench.core.sbom import packages_of_sbom

    folder = signed_build[0]
    document = parse_file(str(folder / "sbom.spdx.json"))
    assert validate_full_spdx_document(document) == []
    listed = [line for line in (folder / "packages.txt").read_text().splitlines() if line.strip()] \
        if (folder / "packages.txt").is_file() else None
    doc = json.loads((folder / "sbom.spdx.json").read_text())
    assert "REHEARSAL" in doc["name"]
    if listed is not None:
        assert sorted(packages_of_sbom(doc)) == sorted(listed)
    assert packages_of_sbom(doc), "the SBOM lists no package"


@pytest.mark.parametrize("tamper", ["flip-image-byte", "change-kickstart", "resign-other-key", "remove-sbom"])
def test_tampering_is_caught(signed_build: tuple[Path, Path, dict[str, str]], tmp_path: Path, tamper: str) -> None:
    folder, keyring, env = signed_build
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    if tamper == "flip-image-byte":
        image = next(p for p in copy.iterdir() if p.suffix == ".qcow2")
        data = bytearray(image.read_bytes())
        data[len(data) // 2] ^= 0xFF
        image.write_bytes(bytes(data))
        expect = f"file {image.name}"
    elif tamper == "change-kickstart":
        ks = next(p for p in copy.iterdir() if p.suffix == ".ks")
        ks.write_text(ks.read_text() + "\n%post\necho injected\n%end\n")
        expect = f"file {ks.name}"
    elif tamper == "resign-other-key":
        other_fpr, _ = make_key(tmp_path / "other", "Someone Else <else@example.org>")
        gpg(tmp_path / "other", "--local-user", other_fpr, "--armor", "--detach-sign", "--output",
            str(copy / "CHECKSUM.asc"), str(copy / "CHECKSUM"))
        expect = "signature"
    else:
        (copy / "sbom.spdx.json").unlink()
        expect = "file sbom.spdx.json"
    code, report = verify(str(copy), "--keyring", str(keyring), "--no-recompose", env=env)
    assert code == 1 and not report["verified"]
    assert expect in failed(report), failed(report)


def test_publish_twice_then_verify_over_http(signed_build: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    folder, keyring, env = signed_build
    tree = tmp_path / "pub"
    base = [sys.executable, "-m", "ccis_workbench", "publish", str(folder), "--to", str(tree), "--json"]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert refused.returncode == 2 and "REHEARSAL" in refused.stdout and not tree.exists()  # --json: on stdout
    fpr = next(line.split(":")[9] for line in gpg(Path(env["GNUPGHOME"]), "--with-colons", "--list-secret-keys")
               .splitlines() if line.startswith("fpr:"))
    runs = []
    for _ in range(2):
        proc = subprocess.run([*base, "--allow-rehearsal", "--sign-key", fpr], capture_output=True, text=True,
                              cwd=REPO, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout)[0])
    images = Path(runs[0]["folder"])
    assert images == tree / "rehearsal/centos-stream-9/x86_64/images"
    assert runs[0]["files"][0] != runs[1]["files"][0]  # a new serial: nothing overwritten
    latest = images / runs[1]["latest"][0]
    assert latest.is_symlink() and os.readlink(latest) == runs[1]["files"][0]
    assert all(name.startswith("REHEARSAL-CentOS-Stream-9-openstack-") for name in runs[0]["files"])

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(images))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        code, report = verify(url, "--keyring", str(keyring), "--no-recompose", env=env)
        assert code == 0, failed(report)
        assert report["signed"] and report["rehearsal"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_boot_test_report_says_whether_the_image_verifies(signed_build: tuple[Path, Path, dict[str, str]],
                                                               catalog_repo: Path, tmp_path: Path) -> None:
    """The verification travels with the boot test's evidence: a note in report.json (which propose commits).

    The boot test takes the checks from the catalog that built the image (--catalog): the repository's own
    catalog composes openstack-stream9 with the hybrid BIOS + UEFI layout this mini catalog's image lacks."""
    from ccis_workbench.flows.test import verification_note

    folder, keyring, env = signed_build
    note = verification_note(next(folder.glob("*.qcow2")), str(keyring))
    assert note.startswith("image verification: VERIFIED (signed, REHEARSAL") and "checks passed" in note
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    sbom = next(copy.glob("*.spdx.json"))
    sbom.write_text(sbom.read_text().replace("SPDX-2.3", "SPDX-2.2"))
    note = verification_note(next(copy.glob("*.qcow2")), str(keyring))
    assert note.startswith("image verification: NOT VERIFIED") and f"file {sbom.name}: sha256" in note
    assert verification_note(tmp_path / "loose.qcow2") == ""  # no build folder, no claim either way
    out = tmp_path / "bt"
    run = subprocess.run([sys.executable, "-m", "ccis_workbench", "--catalog", str(catalog_repo), "boot-test",
                          str(folder), "--rehearsal", "--accel",
                          "tcg", "--memory", "512", "--grow", "64", "--quiet", "--keyring", str(keyring), "-o",
                          str(out)], capture_output=True, text=True, timeout=600, env=env, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    notes = json.loads((out / "report.json").read_text())["notes"]
    assert any(n.startswith("image verification: VERIFIED (signed") for n in notes), notes
    assert not any("another kickstart" in n for n in notes), notes
