"""What comes from outside: install trees (served over HTTP, local, or inside an ISO), test images and archives
may be hostile. Each case is written into tmp_path by the test and handed to the real CLI in a subprocess (bounded
in time and address space): it must end with one message naming the file and line (exit 2), and nothing may be
written outside the cache or work folder."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import resource
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccis_workbench.core import installsource
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.monitor import RecordingMonitor

REPO = Path(__file__).resolve().parents[2]
#: address space of a CLI run (a hostile input must not make it grow without bound)
MEMORY_LIMIT = 1 << 30
TIME_LIMIT = 120

KERNEL = b"kernel" * 100
INITRD = b"initrd" * 100


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(tmp_path: Path, catalog: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI with a private cache ($XDG_CACHE_HOME = tmp_path/xdg), a timeout and a memory limit."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return subprocess.run(
        [sys.executable, "-m", "ccis_workbench", "--catalog", str(catalog), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=TIME_LIMIT,
        check=False,
        preexec_fn=_limit_memory,
    )


def files_outside(tmp_path: Path, *inside: Path) -> set[Path]:
    """Every path under tmp_path except those under *inside* (the folders a run may write)."""
    return {p for p in tmp_path.rglob("*") if not any(p == d or p.is_relative_to(d) for d in inside)}


def first_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr  # one message
    return errors[0]


def treeinfo(
    kernel: str = "images/pxeboot/vmlinuz",
    initrd: str = "images/pxeboot/initrd.img",
    sums: dict[str, str] | None = None,
) -> str:
    given = (
        sums
        if sums is not None
        else {
            "images/pxeboot/vmlinuz": "sha256:" + hashlib.sha256(KERNEL).hexdigest(),
            "images/pxeboot/initrd.img": "sha256:" + hashlib.sha256(INITRD).hexdigest(),
        }
    )
    lines = [
        "[general]",
        "family = Hostile tree",
        "version = 1",
        "name = Hostile tree 1",
        "arch = x86_64",
        "",
        "[images-x86_64]",
        f"kernel = {kernel}",
        f"initrd = {initrd}",
        "",
        "[checksums]",
    ]
    lines += [f"{k} = {v}" for k, v in given.items()]
    return "\n".join(lines) + "\n"


class RecordingServer:
    """A real http.server on 127.0.0.1 serving *files* (URL path -> bytes) and recording every request path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def served_tree() -> Iterator[RecordingServer]:
    """A well-formed tree at /tree/ whose .treeinfo each test replaces."""
    files = {
        "/tree/.treeinfo": treeinfo().encode(),
        "/tree/images/pxeboot/vmlinuz": KERNEL,
        "/tree/images/pxeboot/initrd.img": INITRD,
    }
    with RecordingServer(files) as srv:
        yield srv


# -- 1. names from a .treeinfo are contained, checksums verified before anything is kept --------------------------

HOSTILE_NAMES = [
    ("kernel", "../../../../escaped", "`..`"),  # from the tree's cache folder: tmp_path/escaped
    ("kernel", "images/../../../../../../escaped", "`..`"),
    ("initrd", "{abs}", "absolute path"),
    ("initrd", "images/pxeboot/initrd\x01.img", "control characters"),
    ("kernel", "images/pxeboot/vmlinuz?x=1", "characters other than"),
    ("kernel", "images//pxeboot/vmlinuz", "empty or `.` component"),
    ("kernel", "images/pxeboot/vmlinuz.part", "keeps for itself"),
]


@pytest.mark.parametrize(("key", "name", "words"), HOSTILE_NAMES)
def test_hostile_treeinfo_over_http_writes_nothing_outside_the_cache(
    tmp_path: Path, mini_catalog: Path, served_tree: RecordingServer, key: str, name: str, words: str
) -> None:
    name = name.format(abs=tmp_path / "escaped-absolute")
    other = "initrd" if key == "kernel" else "kernel"
    names = {key: name, other: "images/pxeboot/vmlinuz" if other == "kernel" else "images/pxeboot/initrd.img"}
    text = treeinfo(**names)
    served_tree.files["/tree/.treeinfo"] = text.encode()
    # serve what a naive client would fetch for the hostile name, so that only the check stops it
    served_tree.files["/escaped"] = KERNEL
    before = files_outside(tmp_path, tmp_path / "xdg")
    proc = run_cli(
        tmp_path,
        mini_catalog,
        "build",
        "p",
        "--tree",
        served_tree.url + "/tree/",
        "--accel",
        "tcg",
        "--output",
        str(tmp_path / "artifacts"),
    )
    first = first_error_line(proc)
    line = text.splitlines().index(f"{key} = {name}") + 1
    assert f"{served_tree.url}/tree/.treeinfo:{line}: Unsafe file name in .treeinfo" in first, proc.stderr
    assert f"{key} = " in proc.stderr and words in proc.stderr, proc.stderr
    assert "\x01" not in proc.stderr  # what the tree says is shown escaped
    assert files_outside(tmp_path, tmp_path / "xdg") == before
    assert not (tmp_path / "escaped-absolute").exists() and not (tmp_path / "escaped").exists()
    assert served_tree.requests == ["/tree/.treeinfo"]  # nothing fetched after the .treeinfo


def test_checksum_mismatch_keeps_nothing(tmp_path: Path, mini_catalog: Path, served_tree: RecordingServer) -> None:
    served_tree.files["/tree/images/pxeboot/initrd.img"] = b"tampered"
    proc = run_cli(tmp_path, mini_catalog, "build", "p", "--tree", served_tree.url + "/tree/", "--accel", "tcg")
    first = first_error_line(proc)
    line = treeinfo().splitlines().index("images/pxeboot/initrd.img = sha256:" + hashlib.sha256(INITRD).hexdigest()) + 1
    assert f"/tree/.treeinfo:{line}: Checksum mismatch" in first, proc.stderr
    cached = [p.name for p in (tmp_path / "xdg").rglob("*") if p.is_file()]
    assert not [n for n in cached if "initrd" in n], cached  # neither the file nor its temporary name is kept
    assert ".treeinfo" not in cached  # the tree is not remembered either


@pytest.mark.parametrize(
    ("value", "words"), [("md5:" + "0" * 32, "algorithm 'md5'"), ("sha256:nothex", "not a sha256 digest")]
)
def test_unusable_checksum_is_refused(
    tmp_path: Path, mini_catalog: Path, served_tree: RecordingServer, value: str, words: str
) -> None:
    text = treeinfo(sums={"images/pxeboot/vmlinuz": value})
    served_tree.files["/tree/.treeinfo"] = text.encode()
    proc = run_cli(tmp_path, mini_catalog, "build", "p", "--tree", served_tree.url + "/tree/", "--accel", "tcg")
    first = first_error_line(proc)
    line = text.splitlines().index(f"images/pxeboot/vmlinuz = {value}") + 1
    assert f"/tree/.treeinfo:{line}: Unusable checksum in .treeinfo" in first and words in proc.stderr, proc.stderr
    assert served_tree.requests == ["/tree/.treeinfo"]


def test_symlink_in_the_cache_leading_out_is_not_followed(tmp_path: Path, served_tree: RecordingServer) -> None:
    cache = tmp_path / "cache"
    base = served_tree.url + "/tree/"
    where = cache / "trees" / hashlib.sha256(base.encode()).hexdigest()[:16]
    where.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (where / "images").symlink_to(outside)
    with pytest.raises(WorkbenchError, match="Unsafe path in the cache") as ei:
        installsource.from_url(base, cache=cache)
    assert ei.value.location is not None and ei.value.location.file == base + ".treeinfo"
    assert ei.value.location.line == treeinfo().splitlines().index("kernel = images/pxeboot/vmlinuz") + 1
    assert list(outside.iterdir()) == []
    # a symlink where the kernel goes is replaced, never written through
    (where / "images").unlink()
    (where / "images/pxeboot").mkdir(parents=True)
    target = outside / "victim"
    target.write_bytes(b"keep me")
    (where / "images/pxeboot/vmlinuz").symlink_to(target)
    src = installsource.from_url(base, cache=cache)
    assert target.read_bytes() == b"keep me"
    assert not src.kernel.is_symlink() and src.kernel.read_bytes() == KERNEL


def test_local_tree_with_a_kernel_symlinked_out_is_refused(tmp_path: Path, mini_catalog: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "images/pxeboot").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_bytes(KERNEL)  # even with the right checksum, a file outside the tree is not the tree's
    (tree / "images/pxeboot/vmlinuz").symlink_to(secret)
    (tree / "images/pxeboot/initrd.img").write_bytes(INITRD)
    text = treeinfo()
    (tree / ".treeinfo").write_text(text)
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", str(tree))
    first = first_error_line(proc)
    line = text.splitlines().index("kernel = images/pxeboot/vmlinuz") + 1
    assert f"{tree}/.treeinfo:{line}: Unsafe install tree" in first, proc.stderr
    assert "symlink leading out" in proc.stderr


def make_iso(path: Path, text: str, extra: dict[str, bytes] | None = None) -> Path:
    """An ISO (Rock Ridge + Joliet) made with pycdlib holding /.treeinfo, the tree's kernel and initrd and
    *extra* top-level files."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3)

    def add(iso_path: str, rr: str, joliet: str, data: bytes) -> None:
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=rr, joliet_path=joliet)

    add("/TREEINFO.;1", ".treeinfo", "/.treeinfo", text.encode())
    iso.add_directory("/IMAGES", rr_name="images", joliet_path="/images")
    iso.add_directory("/IMAGES/PXEBOOT", rr_name="pxeboot", joliet_path="/images/pxeboot")
    add("/IMAGES/PXEBOOT/VMLINUZ.;1", "vmlinuz", "/images/pxeboot/vmlinuz", KERNEL)
    add("/IMAGES/PXEBOOT/INITRD.IMG;1", "initrd.img", "/images/pxeboot/initrd.img", INITRD)
    for name, data in (extra or {}).items():
        add(f"/{name.upper()}.;1", name, f"/{name}", data)
    iso.write(str(path))
    iso.close()
    return path


@pytest.mark.parametrize(
    ("key", "name"), [("kernel", "../../../../escaped"), ("initrd", "images/../../../../../escaped")]
)
def test_hostile_iso_given_to_plan_writes_nothing_outside_the_cache(
    tmp_path: Path, mini_catalog: Path, key: str, name: str
) -> None:
    names = {"kernel": "images/pxeboot/vmlinuz", "initrd": "images/pxeboot/initrd.img", key: name}
    text = treeinfo(**names)
    # pycdlib resolves `..` inside the ISO: /escaped is what a naive reader would copy out
    iso = make_iso(tmp_path / "hostile.iso", text, {"escaped": b"written by the ISO"})
    before = files_outside(tmp_path, tmp_path / "xdg")
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", str(iso))
    first = first_error_line(proc)
    line = text.splitlines().index(f"{key} = {name}") + 1
    assert f"{iso}:/.treeinfo:{line}: Unsafe file name in .treeinfo" in first, proc.stderr
    assert "`..` component" in proc.stderr
    assert files_outside(tmp_path, tmp_path / "xdg") == before
    assert not [p for p in tmp_path.rglob("escaped")]


def test_iso_with_a_wrong_checksum_keeps_nothing(tmp_path: Path, mini_catalog: Path) -> None:
    text = treeinfo(sums={"images/pxeboot/vmlinuz": "sha256:" + "ab" * 32})
    iso = make_iso(tmp_path / "bad-sum.iso", text)
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", str(iso))
    first = first_error_line(proc)
    assert (
        f"{iso}:/.treeinfo:{text.splitlines().index('images/pxeboot/vmlinuz = sha256:' + 'ab' * 32) + 1}: "
        "Checksum mismatch" in first
    ), proc.stderr
    assert not [p for p in (tmp_path / "xdg").rglob("*vmlinuz*")]


def test_good_iso_still_plans(tmp_path: Path, mini_catalog: Path) -> None:
    iso = make_iso(tmp_path / "good.iso", treeinfo())
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", str(iso))
    assert proc.returncode == 0, proc.stderr
    files = [p for p in (tmp_path / "xdg").rglob("*") if p.is_file()]
    templates = tmp_path / "xdg/ccis-workbench/templates"  # compiled catalog templates (core/template_cache.py)
    kept = sorted(p.name for p in files if p.parent != templates)
    assert kept == ["initrd.img", "initrd.img.verified", "vmlinuz", "vmlinuz.verified"]
    assert all(p.suffix == ".code" for p in files if p.parent == templates)


def test_plain_http_is_warned_once_in_plan_and_build_output(
    tmp_path: Path, mini_catalog: Path, served_tree: RecordingServer
) -> None:
    # plan: TEST-NET-1 is never contacted (plan fetches nothing)
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", "http://192.0.2.1/tree/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("plain HTTP install tree") == 1
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", "https://192.0.2.1/tree/")
    assert proc.returncode == 0 and "plain HTTP" not in proc.stdout + proc.stderr
    # build: the download step says it once, on the monitor the build output shows
    mon = RecordingMonitor()
    installsource.from_url(served_tree.url + "/tree/", monitor=mon, cache=tmp_path / "cache")
    assert [m for s, m in mon.notes() if "plain HTTP install tree" in m and s == "warning"] == [
        installsource.PLAIN_HTTP_WARNING
    ]


# -- 2. plan fetches nothing -------------------------------------------------------------------------------------


def test_plan_makes_no_request(tmp_path: Path, mini_catalog: Path, served_tree: RecordingServer) -> None:
    """Neither a --tree URL nor the URL a catalog change names is requested by `plan`."""
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", served_tree.url + "/tree/")
    assert proc.returncode == 0, proc.stderr
    assert "plan fetched nothing" in proc.stdout and "a build needs this tree" in proc.stdout
    release = mini_catalog / "kickstarts/releases/centos-stream-9.yaml"
    release.write_text(
        release.read_text().replace(
            "https://mirror.stream.centos.org/9-stream/BaseOS/{arch}/os/", served_tree.url + "/tree/"
        )
    )
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--json")
    assert proc.returncode == 0, proc.stderr
    assert f"inst.repo={served_tree.url}/tree/".replace("127.0.0.1", "10.0.2.2") in proc.stdout
    assert served_tree.requests == []
    # after a build fetched the tree (done here by the download step alone), plan describes it from the cache
    installsource.from_url(served_tree.url + "/tree/", cache=tmp_path / "xdg" / "ccis-workbench")
    served_tree.requests.clear()
    proc = run_cli(tmp_path, mini_catalog, "plan", "p", "--tree", served_tree.url + "/tree/")
    assert proc.returncode == 0, proc.stderr
    assert "Hostile tree 1" in proc.stdout and "kernel and initrd are in the cache" in proc.stdout
    assert served_tree.requests == []


# -- 3. archives given to boot-test: no links, devices, FIFOs, absolute or `..` members -------------------------


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mode = 0o600
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


DISK = b"\0" * 510 + b"\x55\xaa"


def hostile_members(victim: Path) -> list[tuple[str, list[tuple[tarfile.TarInfo, bytes]], str, str]]:
    """(case id, members, member named in the error, words) for each kind of member an archive may not hold."""
    return [
        ("symlink", [_member("disk.raw", tarfile.SYMTYPE, link=str(victim))], "disk.raw", "symbolic link"),
        ("relative-symlink", [_member("disk.raw", tarfile.SYMTYPE, link="../../victim")], "disk.raw", "symbolic link"),
        ("hard-link", [_member("disk.raw", tarfile.LNKTYPE, link=str(victim))], "disk.raw", "hard link"),
        ("char-device", [_member("disk.raw", tarfile.CHRTYPE)], "disk.raw", "a device"),
        ("block-device", [_member("disk.raw", tarfile.BLKTYPE)], "disk.raw", "a device"),
        ("fifo", [_member("disk.raw", tarfile.FIFOTYPE)], "disk.raw", "a FIFO"),
        (
            "absolute",
            [_member("disk.raw", data=DISK), _member(str(victim.parent / "planted"), data=b"x")],
            str(victim.parent / "planted"),
            "absolute path",
        ),
        ("dotdot", [_member("disk.raw", data=DISK), _member("../planted", data=b"x")], "../planted", "`..`"),
        (
            "symlink-beside",
            [_member("escape", tarfile.SYMTYPE, link="/"), _member("disk.raw", data=DISK)],
            "escape",
            "symbolic link",
        ),
        ("twice", [_member("disk.raw", data=DISK), _member("disk.raw", data=b"other")], "disk.raw", "appears twice"),
    ]


CASES = [c[0] for c in hostile_members(Path("/x/victim"))]


@pytest.mark.parametrize("case", CASES)
def test_hostile_gce_tar_is_refused_by_boot_test(tmp_path: Path, case: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    victim.chmod(0o600)
    _, members, named, words = next(c for c in hostile_members(victim) if c[0] == case)
    art = tmp_path / "art"
    art.mkdir()
    gce = make_tar(art / f"{case}.tar.gz", members)
    work = tmp_path / "work"
    work.mkdir()
    before = files_outside(tmp_path, work, tmp_path / "xdg")
    proc = run_cli(
        tmp_path,
        REPO / "tests/data/mini_catalog",
        "boot-test",
        str(gce),
        "--profile",
        "openstack-stream9",
        "--workdir",
        str(work),
    )
    first = first_error_line(proc)
    assert first == f"error: {gce}: Unsafe archive member", proc.stderr
    assert f"{named!r} in {gce.name}" in proc.stderr and words in proc.stderr, proc.stderr
    assert (victim.stat().st_mode & 0o777) == 0o600 and victim.read_bytes() == b"not yours"
    assert files_outside(tmp_path, work, tmp_path / "xdg") == before
    assert list(work.iterdir()) == [], "nothing unpacked, no work folder left"


def test_hostile_vagrant_box_is_refused_before_vagrant_or_tar_unpacks_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    victim.chmod(0o600)
    box = make_tar(
        tmp_path / "p.vagrant-libvirt.box",
        [_member("metadata.json", data=b"{}"), _member("box.img", tarfile.SYMTYPE, link=str(victim))],
    )
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(
        tmp_path,
        REPO / "tests/data/mini_catalog",
        "boot-test",
        str(box),
        "--profile",
        "openstack-stream9",
        "--workdir",
        str(work),
    )
    assert first_error_line(proc) == f"error: {box}: Unsafe archive member", proc.stderr
    assert "'box.img' in p.vagrant-libvirt.box: it is a symbolic link" in proc.stderr
    assert "vagrant box add" not in proc.stderr  # refused before vagrant saw it
    assert (victim.stat().st_mode & 0o777) == 0o600 and list(work.iterdir()) == []


def test_bad_box_metadata_names_its_line(tmp_path: Path) -> None:
    from ccis_workbench.core.testimage import disk_for

    box = make_tar(
        tmp_path / "p.vagrant-libvirt.box",
        [_member("metadata.json", data=b'{\n  "provider": \n}\n'), _member("box.img", data=DISK)],
    )
    with pytest.raises(WorkbenchError) as ei:
        disk_for(box, str(tmp_path))
    assert ei.value.title == "Unusable box metadata"
    assert str(ei.value.location) == f"{box}:metadata.json:3"


def test_plain_gce_tar_still_unpacks_with_a_private_mode(tmp_path: Path) -> None:
    from ccis_workbench.core.testimage import disk_for

    gce = make_tar(tmp_path / "p.tar.gz", [_member("disk.raw", data=DISK)])
    disk = disk_for(gce, str(tmp_path))
    try:
        assert disk.path.read_bytes() == DISK and not disk.path.is_symlink()
        assert disk.path.stat().st_mode & 0o777 == 0o644  # qemu (another user) reads it
    finally:
        disk.cleanup()


# -- 4. what holds the kickstart is private: build volumes and the initrd copy are 0600 --------------------------


def test_volumes_are_created_private_by_default() -> None:
    pytest.importorskip("libvirt")
    import inspect
    import xml.etree.ElementTree as ET

    from ccis_workbench.backends.libvirt_session import Session, volume_xml

    root = ET.fromstring(volume_xml("ccis-x-initrd.img", "raw", 10))
    assert root.findtext("target/permissions/mode") == "0600"
    assert inspect.signature(Session.create_volume).parameters["mode"].default == "0600"


def test_initrd_copy_with_the_kickstart_is_private_and_no_planted_link_is_followed(tmp_path: Path) -> None:
    from ccis_workbench.core.initrd import inject_kickstart

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(INITRD)
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "initrd.img"
    inject_kickstart(initrd, "rootpw --plaintext secret\n", dest)
    assert dest.stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (work / ".initrd.img.part").symlink_to(victim)
    with pytest.raises(WorkbenchError, match="Cannot write initrd"):
        inject_kickstart(initrd, "rootpw --plaintext secret\n", dest)
    assert victim.read_bytes() == b"not yours"


@pytest.mark.libvirt
def test_build_volumes_on_the_real_libvirt_are_private(libvirt_uri: str, tmp_path: Path) -> None:
    """A volume made the way a build makes its initrd volume (default mode) is 0600 on the pool's disk."""
    from ccis_workbench.backends.libvirt_session import Session
    from ccis_workbench.core.initrd import inject_kickstart
    from ccis_workbench.core.plan import new_build_id
    from tests.fixtures_libvirt import left_behind

    prefix = f"ccis-security-{new_build_id()}"
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(INITRD)
    inject_kickstart(initrd, "rootpw --plaintext secret\n", tmp_path / "with-ks.img")
    try:
        with Session(libvirt_uri) as s:
            vol = s.create_volume(f"{prefix}-initrd.img", "raw", (tmp_path / "with-ks.img").stat().st_size)
            s.upload(vol, tmp_path / "with-ks.img")
            disk = s.create_volume(f"{prefix}-disk.qcow2", "qcow2", 1 << 20)
            for v in (vol, disk):
                assert os.stat(v.path()).st_mode & 0o777 == 0o600, v.path()
    finally:
        assert left_behind(libvirt_uri, prefix) == []


# -- 5. CHECKSUM lists files of its own folder only ---------------------------------------------------------------


def _checksum_line(name: str, data: bytes) -> str:
    return f"SHA256 ({name}) = {hashlib.sha256(data).hexdigest()}"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../fifo", "climbs out of the folder with `..`"),
        ("{abs}", "is an absolute path"),
        ("sub/../../fifo", "climbs out of the folder with `..`"),
        ("sub/image.qcow2", "names a file in another folder"),
    ],
)
def test_checksum_naming_files_outside_its_folder_is_refused(tmp_path: Path, name: str, words: str) -> None:
    # a FIFO outside the folder: reading it would block, so the run ending in time shows it was not read
    os.mkfifo(tmp_path / "fifo")
    name = name.format(abs=tmp_path / "fifo")
    folder = tmp_path / "artifacts"
    (folder / "sub").mkdir(parents=True)
    (folder / "image.qcow2").write_bytes(DISK)
    text = "# CentOS-style\n" + _checksum_line("image.qcow2", DISK) + "\n" + _checksum_line(name, b"") + "\n"
    (folder / "CHECKSUM").write_text(text)
    proc = run_cli(tmp_path, REPO / "tests/data/mini_catalog", "verify", str(folder))
    first = first_error_line(proc)
    assert first == f"error: {folder}/CHECKSUM:3: Bad CHECKSUM file", proc.stderr
    assert words in proc.stderr, proc.stderr


def test_remote_checksum_naming_files_outside_is_refused_before_any_fetch(tmp_path: Path) -> None:
    text = _checksum_line("image.qcow2", DISK) + "\n" + _checksum_line("../../etc/passwd", b"") + "\n"
    files = {"/pub/CHECKSUM": text.encode(), "/pub/image.qcow2": DISK, "/etc/passwd": b"root:x:0:0"}
    with RecordingServer(files) as srv:
        proc = run_cli(tmp_path, REPO / "tests/data/mini_catalog", "verify", srv.url + "/pub/")
        first = first_error_line(proc)
        assert first == f"error: {srv.url}/pub/CHECKSUM:2: Bad CHECKSUM file", proc.stderr
        assert "/etc/passwd" not in srv.requests and "/pub/image.qcow2" not in srv.requests, srv.requests


@pytest.mark.libvirt
@pytest.mark.slow
def test_failed_build_keeps_its_kickstart_privately(
    no_leftovers: str, tree_server: str, mini_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build whose %post fails keeps its logs and kickstart in the cache: a 0700 folder, a 0600 kickstart."""
    from ccis_workbench.backends.libvirt_build import Build, BuildFailed
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.monitor import RecordingMonitor
    from ccis_workbench.core.plan import PlanOptions, make_plan

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cat = Catalog.load(mini_catalog)
    prof = cat.parse_profile_text(
        "name: fails\nrelease: centos-stream-9\ntarget: openstack\noverlays: []\nvariables:\n  disk_size: 2\n"
        "kickstart: |\n  %post --erroronfail\n  exit 1\n  %end\n",
        "profiles/fails.yaml",
    )
    src = installsource.from_url(tree_server, cache=tmp_path / "cache")
    opts = PlanOptions(
        accel="tcg",
        disk_size_mb=96,
        memory_mb=512,
        output_dir=str(tmp_path / "out"),
        inactivity_timeout=60.0,
        total_timeout=240.0,
    )
    plan = make_plan(Composer(cat).compose(prof), prof.name, src, opts)
    with pytest.raises(BuildFailed) as ei:
        Build(plan, RecordingMonitor()).run()
    logs = Path(ei.value.result.logs_dir or "")
    assert logs.is_relative_to(tmp_path / "xdg"), logs
    assert logs.stat().st_mode & 0o777 == 0o700
    assert (logs / "kickstart.ks").stat().st_mode & 0o777 == 0o600
    assert (logs / "kickstart.ks").read_text() == plan.kickstart
