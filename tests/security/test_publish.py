"""`publish` to mirrors: a real rsync daemon and a real sshd on 127.0.0.1, started here in tmp_path and stopped
whatever happens. A small signed build folder (image, kickstart, manifest, SPDX SBOM, in-toto attestation,
CHECKSUM signed by a throwaway GnuPG key) is made without libvirt. Published twice (the second adds a release and
overwrites nothing), the tree served over HTTP on 127.0.0.1 verifies. A planted file where publish would write
makes it exit 2 and change nothing; bad targets (unknown scheme, empty path, `..`, option-looking hosts) exit 2
before any connection, in bounded time and memory, writing nothing."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1 << 30
TIME_LIMIT = 180
IMAGES = "rehearsal/centos-stream-9/x86_64/images"
LATEST = "REHEARSAL-CentOS-Stream-9-openstack-latest.x86_64.qcow2"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("rsync", "ssh", "ssh-keygen", "gpg", "gpgv"))
    or not Path("/usr/sbin/sshd").exists(),
    reason="rsync, openssh-client, openssh-server and gnupg are in run.sh's package lists",
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccis_workbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=TIME_LIMIT,
        check=False,
        preexec_fn=_limit_memory,
    )


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", *args], capture_output=True, text=True, check=True
    ).stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Build:
    folder: Path
    keyring: Path
    fpr: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    """A signed rehearsal build folder as a build writes it, made with the workbench's own SBOM, attestation and
    CHECKSUM writers (no libvirt)."""
    from ccis_workbench.core import provenance, sbom
    from ccis_workbench.core.artifacts import checksum_text
    from ccis_workbench.core.manifest import Manifest

    work = tmp_path_factory.mktemp("pubbuild")
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", "Publish Test <publish@example.org>", "ed25519", "sign", "never")
    fpr = next(
        ln.split(":")[9] for ln in gpg(home, "--with-colons", "--list-keys").splitlines() if ln.startswith("fpr:")
    )
    keyring = work / "pub.gpg"
    keyring.write_bytes(
        subprocess.run(["gpg", "--homedir", str(home), "--export", fpr], capture_output=True, check=True).stdout
    )
    folder = work / "20261205-120000-p"
    folder.mkdir()
    (folder / "disk.qcow2").write_bytes(b"QFI\xfb" + os.urandom(64 << 10))
    (folder / "p.ks").write_text("# kickstart\ntext\nrootpw --lock\n%packages\n@core\n%end\n")
    ks_sha = sha(folder / "p.ks")
    manifest = Manifest(
        build_id=folder.name, profile="p", release="centos-stream-9", target="openstack", kickstart_sha256=ks_sha,
        rehearsal=True, artifacts=[{"file": n, "sha256": sha(folder / n)} for n in ("disk.qcow2", "p.ks")],
        choice={"release": "centos-stream-9", "target": "openstack", "overlays": [], "variables": {}},
    )  # fmt: skip
    manifest.write(folder)
    packages = sbom.parse_packages(["bash-5.1.8-9.el9.x86_64 baseos", "coreutils-8.32-35.el9.x86_64 baseos"])
    doc = sbom.spdx_document("disk.qcow2", packages, created="2026-12-05T12:00:00Z", rehearsal=True,
                             kickstart_sha256=ks_sha, tool="ccis-workbench-test")  # fmt: skip
    (folder / sbom.SBOM_NAME).write_text(sbom.sbom_json(doc))
    produced = [folder / n for n in ("disk.qcow2", "p.ks", "manifest.json", sbom.SBOM_NAME)]
    st = provenance.statement(
        subjects={p.name: sha(p) for p in produced}, manifest=manifest.to_dict(),
        catalog={"path": "catalog", "commit": "0" * 40, "dirty": False}, dependencies=[],
        started="2026-12-05T12:00:00Z", finished="2026-12-05T12:10:00Z", host="test",
    )  # fmt: skip
    (folder / provenance.PROVENANCE_NAME).write_text(provenance.statement_json(st))
    produced.append(folder / provenance.PROVENANCE_NAME)
    (folder / "CHECKSUM").write_text(checksum_text(produced))
    gpg(
        home,
        "--local-user",
        fpr,
        "--armor",
        "--detach-sign",
        "--output",
        str(folder / "CHECKSUM.asc"),
        str(folder / "CHECKSUM"),
    )
    # a private configuration: the user's sign_key setting must not sign (or not sign) for these tests
    env = dict(os.environ, GNUPGHOME=str(home), XDG_CONFIG_HOME=str(work / "config"))
    env.pop("CCIS_WORKBENCH_SIGN_KEY", None)
    try:
        yield Build(folder, keyring, fpr, env)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise AssertionError(f"server ended: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"server not listening on {port}: {log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Mirror:
    """A mirror: the `--to` address, the folder it writes, the extra publish options."""

    to: str
    root: Path
    options: list[str]


@pytest.fixture
def rsync_mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "rsync-module"
    root.mkdir()
    port = free_port()
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(
        f"use chroot = no\nmunge symlinks = no\nlog file = {tmp_path / 'rsyncd.log'}\n"
        f"[mirror]\npath = {root}\nread only = false\nuid = {os.getuid()}\ngid = {os.getgid()}\n"
    )
    log = tmp_path / "rsyncd.log"
    proc = subprocess.Popen(
        ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}", "--address=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        log.touch()
        wait_listening(port, proc, log)
        yield Mirror(f"rsync://127.0.0.1:{port}/mirror/pub", root / "pub", [])
    finally:
        stop(proc)


@pytest.fixture
def ssh_mirror(tmp_path: Path) -> Iterator[Mirror]:
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = free_port()
    host_key = (keys / "host.pub").read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    conf = keys / "sshd_config"
    conf.write_text(
        f"ListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile {keys / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    if os.getuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = tmp_path / "sshd.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf), "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # fmt: skip
    try:
        wait_listening(port, proc, log)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        options = ["--port", str(port), "--ssh-key", str(keys / "client"), "--ssh-option",
                   f"UserKnownHostsFile={keys / 'known_hosts'}", "--ssh-option", "StrictHostKeyChecking=yes",
                   "--ssh-option", "IdentitiesOnly=yes"]  # fmt: skip
        yield Mirror(f"{user}@127.0.0.1:{tmp_path / 'ssh-root' / 'pub'}", tmp_path / "ssh-root" / "pub", options)
    finally:
        stop(proc)


@pytest.fixture
def local_mirror(tmp_path: Path) -> Mirror:
    return Mirror(str(tmp_path / "local" / "pub"), tmp_path / "local" / "pub", [])


@pytest.fixture(params=["local", "rsync", "ssh"])
def mirror(request: pytest.FixtureRequest) -> Mirror:
    """The same guarantees for every kind of target: one layout, then a transfer."""
    return request.getfixturevalue(f"{request.param}_mirror")


def snapshot(root: Path) -> dict[str, str]:
    """Every path under *root*: a file's sha256, a symlink's target, a folder's mark."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else sha(p)
    return out


def publish(build: Build, mirror: Mirror, tmp_path: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "publish", str(build.folder), "--to", mirror.to, "--allow-rehearsal", *mirror.options, *more,
        cwd=tmp_path, env=build.env,
    )  # fmt: skip


def serve_and_verify(folder: Path, build: Build, tmp_path: Path) -> dict:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        proc = run_cli("verify", url, "--keyring", str(build.keyring), "--no-recompose", "--json", cwd=tmp_path)
        if proc.returncode != 0:
            try:
                failed = [f for f in json.loads(proc.stdout).get("findings", []) if not f.get("ok", True)]
            except ValueError:
                failed = []
            pytest.fail(
                f"verify of {url} exited {proc.returncode}; failed checks: {failed}\n"
                f"{proc.stderr[-2000:]}\nmirror: {sorted(snapshot(folder))}"
            )
        return json.loads(proc.stdout)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_publish_twice_to_a_mirror_then_verify_over_http(build: Build, mirror: Mirror, tmp_path: Path) -> None:
    runs, trees = [], []
    for _ in range(2):
        proc = publish(build, mirror, tmp_path, "--sign-key", build.fpr, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout)[0])
        trees.append(snapshot(mirror.root))
    first, second = runs
    # the second publish replaced only the index names; every other path is as the first left it
    index = {f"{IMAGES}/{n}" for n in ("CHECKSUM", "CHECKSUM.asc", LATEST)}
    assert {k: v for k, v in trees[0].items() if k not in index} == {
        k: v for k, v in trees[1].items() if k in trees[0] and k not in index
    }
    assert len(trees[1]) > len(trees[0]) and trees[1][f"{IMAGES}/CHECKSUM"] != trees[0][f"{IMAGES}/CHECKSUM"]
    assert first["signed"] and second["signed"]
    assert first["folder"].endswith(IMAGES) and first["folder"].startswith(mirror.to.rsplit("/pub", 1)[0])
    assert first["files"][0] == "REHEARSAL-CentOS-Stream-9-openstack-20261205.0.x86_64.qcow2"
    assert second["files"][0] == "REHEARSAL-CentOS-Stream-9-openstack-20261205.1.x86_64.qcow2"
    images = mirror.root / IMAGES
    # the second release was added beside the first, which is unchanged
    for name in first["files"] + second["files"]:
        assert (images / name).is_file() and not (images / name).is_symlink(), name
    assert sha(images / first["files"][0]) == sha(build.folder / "disk.qcow2")
    assert os.readlink(images / LATEST) == second["files"][0]
    listed = (images / "CHECKSUM").read_text()
    for name in first["files"] + second["files"] + [LATEST]:
        assert f"SHA256 ({name}) = " in listed, name
    # no staging folder or temporary file left behind, nothing written beside the tree
    assert [p.name for p in mirror.root.parent.iterdir()] == ["pub"]
    assert not [p for p in mirror.root.rglob("*") if p.name.startswith(".")]
    report = serve_and_verify(images, build, tmp_path)
    assert report["verified"] and report["signed"] and report["rehearsal"]
    checks = {f["check"] for f in report["findings"]}
    assert {"signature", "sbom", "attestation", "kickstart", f"file {LATEST}"} <= checks


def test_a_planted_file_at_a_latest_name_stops_publish(build: Build, mirror: Mirror, tmp_path: Path) -> None:
    first = publish(build, mirror, tmp_path, "--sign-key", build.fpr)
    assert first.returncode == 0, first.stderr[-3000:]
    images = mirror.root / IMAGES
    (images / LATEST).unlink()
    (images / LATEST).write_bytes(b"a file someone put here by hand")
    before = snapshot(mirror.root)
    again = publish(build, mirror, tmp_path, "--sign-key", build.fpr)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "Already published" in again.stderr and LATEST in again.stderr
    assert snapshot(mirror.root) == before


def test_a_signed_mirror_is_not_made_unsigned(build: Build, mirror: Mirror, tmp_path: Path) -> None:
    first = publish(build, mirror, tmp_path, "--sign-key", build.fpr)
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(mirror.root)
    unsigned = publish(build, mirror, tmp_path)
    assert unsigned.returncode == 2 and "Signed folder" in unsigned.stderr, unsigned.stderr
    assert snapshot(mirror.root) == before


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("ftp://127.0.0.1/mirror/pub", "unknown scheme 'ftp'"),
        ("rsync://127.0.0.1", "no rsync module"),
        ("rsync:///mirror/pub", "no host name"),
        ("rsync://127.0.0.1:99999/mirror/pub", "port"),
        ("rsync://127.0.0.1/mirror/../etc", "climbs with `..`"),
        ("rsync://user@127.0.0.1/mirror/pub", "no user"),
        ("127.0.0.1:", "empty remote path"),
        ("127.0.0.1:~/pub", "`~` is not expanded"),
        ("root@127.0.0.1:pub/../../etc", "climbs with `..`"),
        ("127.0.0.1:/srv/pub\x1b[2J", "control characters"),
        ("-oProxyCommand=touch${IFS}pwned:pub", "not a plain name"),
        ("us er@127.0.0.1:pub", "not a plain name"),
    ],
)
def test_bad_targets_exit_2_before_any_connection(build: Build, tmp_path: Path, target: str, why: str) -> None:
    # --to=TARGET: argparse would take a leading '-' for an option otherwise
    proc = run_cli("publish", str(build.folder), f"--to={target}", "--allow-rehearsal", cwd=tmp_path, env=build.env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Bad publish target" in proc.stderr and why in proc.stderr, proc.stderr
    assert "\x1b" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made from the target's text
    assert not (tmp_path / "pwned").exists()


def option(options: list[str], name: str) -> list[str]:
    return [options[i + 1] for i, opt in enumerate(options) if opt == name]


@pytest.mark.parametrize("kind", ["rsync", "ssh"])
def test_a_file_that_appears_after_the_listing_is_not_overwritten(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The second guard (rsync --ignore-existing and a check that nothing was skipped; ssh `test -e` and `ln`):
    the same name appeared on the mirror between the listing and the transfer."""
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows import publish as pub

    mirror: Mirror = request.getfixturevalue(f"{kind}_mirror")
    stage = tmp_path / "stage"
    (stage / "r/images").mkdir(parents=True)
    (stage / "r/images/new.qcow2").write_bytes(b"the new release")
    (stage / "r/images/CHECKSUM").write_text("the new index\n")
    (mirror.root / "r/images").mkdir(parents=True)
    (mirror.root / "r/images/new.qcow2").write_bytes(b"published in between")
    (mirror.root / "r/images/CHECKSUM").write_text("the old index\n")
    before = snapshot(mirror.root)
    port = option(mirror.options, "--port")
    target = pub.parse_target(mirror.to, port=int(port[0]) if port else None)
    transport = pub.Transport(
        target, ssh_key=next(iter(option(mirror.options, "--ssh-key")), None),
        ssh_options=tuple(option(mirror.options, "--ssh-option")),
    )  # fmt: skip
    with pytest.raises(WorkbenchError, match="Already published"):
        if kind == "rsync":
            transport.send(stage, ["r/images/new.qcow2"], target.address() + "/", keep_existing=True)
        else:
            pub._ssh_commit(transport, stage, ["r/images/new.qcow2"], ["r/images/CHECKSUM"])
    assert snapshot(mirror.root) == before  # not overwritten, the index not replaced, no staging folder left


def _empty(folder: Path) -> None:
    pass


def _loose_files(folder: Path) -> None:
    (folder / "disk.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 512)
    (folder / "notes.txt").write_text("not a build\n")


@pytest.mark.parametrize("make", [_empty, _loose_files], ids=["empty", "loose-files"])
def test_verify_of_a_folder_that_is_not_a_build_is_bad_input(build: Build, tmp_path: Path, make) -> None:
    folder = tmp_path / "not a build"
    folder.mkdir()
    make(folder)
    before = snapshot(tmp_path)
    proc = run_cli("verify", str(folder), "--keyring", str(build.keyring), "--no-recompose", cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Not a build" in proc.stderr and str(folder) in proc.stderr, proc.stderr
    assert snapshot(tmp_path) == before
    as_json = run_cli("verify", str(folder), "--no-recompose", "--json", cwd=tmp_path)
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["file"] == str(folder), as_json.stdout


def _flip_a_byte(folder: Path) -> str:
    image = folder / "disk.qcow2"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    return "file disk.qcow2"


def _lose_the_checksum(folder: Path) -> str:
    (folder / "CHECKSUM").unlink()
    (folder / "CHECKSUM.asc").unlink()
    return "checksum"


@pytest.mark.parametrize("tamper", [_flip_a_byte, _lose_the_checksum], ids=["flipped-byte", "no-checksum"])
def test_verify_of_a_build_with_a_mismatch_exits_1(build: Build, tmp_path: Path, tamper) -> None:
    intact = run_cli("verify", str(build.folder), "--keyring", str(build.keyring), "--no-recompose", cwd=tmp_path)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    copy = tmp_path / build.folder.name
    shutil.copytree(build.folder, copy)
    check = tamper(copy)
    proc = run_cli("verify", str(copy), "--no-recompose", "--json", cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert not report["verified"] and check in {f["check"] for f in report["findings"] if not f["ok"]}


@pytest.mark.parametrize("kind", ["rsync", "ssh"])
def test_a_signed_publish_does_not_vouch_for_a_tampered_mirror(
    kind: str, build: Build, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The new CHECKSUM keeps the mirror's lines for files already published: when they no longer match the
    mirror's signature, signing them again would launder them. Exit 2, nothing sent."""
    mirror: Mirror = request.getfixturevalue(f"{kind}_mirror")
    first = publish(build, mirror, tmp_path, "--sign-key", build.fpr)
    assert first.returncode == 0, first.stderr[-3000:]
    checksum = mirror.root / IMAGES / "CHECKSUM"
    lines = checksum.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("SHA256 (") and ".qcow2)" in ln)
    lines[at] = lines[at].rsplit("= ", 1)[0] + "= " + "0" * 64  # someone swapped the image and its line
    checksum.write_text("\n".join(lines) + "\n")
    before = snapshot(mirror.root)
    again = publish(build, mirror, tmp_path, "--sign-key", build.fpr)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "Bad signature on the mirror" in again.stderr and f"{IMAGES}/CHECKSUM" in again.stderr, again.stderr
    assert snapshot(mirror.root) == before


def test_an_index_file_of_the_same_size_and_mtime_is_still_replaced(rsync_mirror: Mirror, tmp_path: Path) -> None:
    """rsync's quick check skips a file whose size and mtime agree with the one there. A CHECKSUM.asc is always
    the same size, and two publishes in one second give it the same mtime: the new CHECKSUM went out with the old
    signature ("BAD signature" on verify; the twice-published test above failed so under load). The index files
    that a publish replaces are always sent."""
    from ccis_workbench.flows.publish import Transport, parse_target

    stage = tmp_path / "stage"
    stage.mkdir()
    new = stage / "CHECKSUM.asc"
    new.write_text("the new signature\n")
    rsync_mirror.root.mkdir(parents=True)
    there = rsync_mirror.root / "CHECKSUM.asc"
    there.write_text("the old signature\n")  # the same size
    os.utime(there, ns=(new.stat().st_atime_ns, new.stat().st_mtime_ns))
    target = parse_target(rsync_mirror.to)
    Transport(target).send(stage, ["CHECKSUM.asc"], target.address().rstrip("/") + "/", keep_existing=False)
    assert there.read_text() == "the new signature\n"
