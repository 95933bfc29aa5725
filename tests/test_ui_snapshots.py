"""SVG snapshots of the main screens (pytest-textual-snapshot). Regenerate: pytest tests/test_ui_snapshots.py
--snapshot-update, then review the SVGs in the diff. A fixed host status and a private catalog keep them stable;
the build, boot-test and propose screens also get injected ids, clock and date, and paths under one fixed folder."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, SelectionList

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.ui.app import Runners, WorkbenchApp
from ccis_workbench.ui.capabilities import FixedCapabilities, HostStatus
from ccis_workbench.ui.widgets.kickstart_view import KickstartView
from tests.test_ui_support import REPO, make_app, make_catalog, settle


@pytest.fixture
def ui_catalog(tmp_path: Path) -> Path:
    return make_catalog(tmp_path)


def with_overlays(*names: str, then=None):  # type: ignore[no-untyped-def]
    """A run_before that waits for the first preview, selects overlays, and runs *then*."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        screen = pilot.app.screen
        sl = screen.query_one("#overlays", SelectionList)
        for name in names:
            sl.select(name)
            await settle(pilot)
        screen.query_one("#kickstart", KickstartView).focus()
        await pilot.pause()
        if then is not None:
            await then(pilot)
        await settle(pilot)

    return run_before


def keys(*k: str):  # type: ignore[no-untyped-def]
    async def press(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press(*k)
        await settle(pilot)

    return press


def test_snapshot_compose_with_provenance(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = pilot.app.screen
        screen.jump_to_line(screen.query_one("#kickstart", KickstartView).line_count - 8)
        await pilot.press("v")

    assert snap_compare(make_app(ui_catalog), terminal_size=(120, 36), run_before=with_overlays("ui-alpha", then=go))


def test_snapshot_compose_small_terminal(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ui_catalog), terminal_size=(80, 24), run_before=with_overlays("ui-alpha"))


def test_snapshot_diff_tab(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ui_catalog), terminal_size=(120, 36),
                        run_before=with_overlays("ui-alpha", then=keys("d")))


def test_snapshot_lint_tab(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ui_catalog), terminal_size=(120, 36),
                        run_before=with_overlays("ui-beta", then=keys("l")))


def test_snapshot_review(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ui_catalog), terminal_size=(120, 36),
                        run_before=with_overlays(then=keys("r")))


def test_snapshot_help(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ui_catalog), terminal_size=(120, 36),
                        run_before=with_overlays(then=keys("question_mark")))


def test_snapshot_error_panel_light(snap_compare, ui_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    (ui_catalog / "kickstarts/overlays/ui-alpha.ks.j2").write_text("%packages\n{{ nope( }}\n%end\n")
    assert snap_compare(make_app(ui_catalog, theme="ccis-light"), terminal_size=(120, 36),
                        run_before=with_overlays("ui-alpha"))


# -- the build, boot-test and propose screens, before, during and after a run -----------------------------------
#
# What changes on every run is injected (WorkbenchApp(runners=Runners(ids=..., clock=..., today=...))): build and run
# ids from a counter, a clock the test moves by hand (the timers show what it says), a fixed date for the propose
# tag; every path lies under one fixed folder the test chooses (SNAP). The runners are stand-ins for the backend
# that report through the screens' real monitors; the build folder they leave is laid out as a build writes it
# (manifest, SBOM, attestation, CHECKSUM, optionally a CHECKSUM.asc made by gpg with a throwaway test key).

SNAP = Path("/tmp/ccis-ui-snapshots")  # fixed: the paths it holds are on the screens
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]
SNAP_UI = HostStatus("qemu:///system", True, "libvirt 9.0.0", "tcg")
PROFILE = "openstack-stream9"

#: A throwaway ed25519 signing key made for these tests only (no passphrase, trusted nowhere): a fixed key keeps its
#: id, shown on the screens, the same on every run. Fingerprint F0B71450AAE38045517538129BFA500A61617370.
TEST_KEY = """-----BEGIN PGP PRIVATE KEY BLOCK-----

lFgEaVW5ABYJKwYBBAHaRw8BAQdAhk9wjEL5cka9nJhMMfkTyeWIXKXOgXB+rRLE
5eKpKlYAAQDQrqDGSemFJF3n5yNNfchy2lXQ28cNpLHedh2g+nT4TBLYtDtDQ0lT
IFNuYXBzaG90IFRlc3QgU2lnbmVyIDxzbmFwc2hvdC1zaWduZXJAZXhhbXBsZS5p
bnZhbGlkPoiQBBMWCAA4FiEE8LcUUKrjgEVRdTgSm/pQCmFhc3AFAmlVuQACGwMF
CwkIBwIGFQoJCAsCBBYCAwECHgECF4AACgkQm/pQCmFhc3BCSAEAnvwpcz5W65gO
lp0r625Lz07hlDb7pr+MvPHfQoMG+XIA/2pdaNThRd/gqliMbt2mZ+ObL44MnwYD
8H5QmtiwmzUB
=70P2
-----END PGP PRIVATE KEY BLOCK-----
"""
TEST_KEY_FPR = "F0B71450AAE38045517538129BFA500A61617370"


class HandClock:
    """The run timers' clock: it says what the test set, so a timer shows the same on every run."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counter:
    """Build and run ids: 20260101-000000-0001, -0002, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"20260101-000000-{self.n:04d}"


@pytest.fixture
def snap() -> Iterator[Path]:
    """The fixed folder every path on these screens lies under: the catalog, the install tree, the outputs and
    a GnuPG home holding the test key (GNUPGHOME while the test runs, as gpg and gpgv read it)."""
    shutil.rmtree(SNAP, ignore_errors=True)
    SNAP.mkdir(parents=True)
    root = make_catalog(SNAP)
    shutil.copy(REPO / "kickstarts/testspec.yaml", root / "kickstarts/testspec.yaml")
    make_tree(SNAP / "tree")
    try:
        with signing_home(SNAP / "gnupg"):
            yield SNAP
    finally:
        shutil.rmtree(SNAP, ignore_errors=True)


@contextlib.contextmanager
def signing_home(home: Path) -> Iterator[Path]:
    """GNUPGHOME=*home* (made 0700) holding the throwaway test key, its public key also in gpgv's default keyring
    (the signature checks need no --keyring); the old GNUPGHOME is back and the agent stopped afterwards."""
    home.mkdir(mode=0o700)
    old = os.environ.get("GNUPGHOME")
    os.environ["GNUPGHOME"] = str(home)
    try:
        subprocess.run(["gpg", "--batch", "--import"], input=TEST_KEY.encode(), capture_output=True, check=True)
        public = subprocess.run(["gpg", "--batch", "--export", TEST_KEY_FPR], capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--batch", "--no-default-keyring", "--keyring", str(home / "trustedkeys.kbx"),
                        "--import"], input=public, capture_output=True, check=True)
        yield home
    finally:
        if old is None:
            os.environ.pop("GNUPGHOME", None)
        else:
            os.environ["GNUPGHOME"] = old
        subprocess.run(["gpgconf", "--kill", "all"], capture_output=True, check=False,
                       env=dict(os.environ, GNUPGHOME=str(home)))


def make_tree(root: Path) -> Path:
    """A local install tree with a rehearsal .treeinfo and small kernel and initrd files (nothing boots them)."""
    pxe = root / "images/pxeboot"
    pxe.mkdir(parents=True)
    (pxe / "vmlinuz").write_bytes(b"kernel" * 100)
    (pxe / "initrd.img").write_bytes(b"initrd" * 100)
    sums = {n: hashlib.sha256((pxe / n).read_bytes()).hexdigest() for n in ("vmlinuz", "initrd.img")}
    family = "CCIS Workbench rehearsal"
    (root / ".treeinfo").write_text(
        f"[general]\nfamily = {family}\nversion = 0.1\nname = {family} 0.1\narch = x86_64\n\n"
        "[tree]\narch = x86_64\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\n"
        "initrd = images/pxeboot/initrd.img\n\n[checksums]\n"
        f"images/pxeboot/vmlinuz = sha256:{sums['vmlinuz']}\nimages/pxeboot/initrd.img = sha256:{sums['initrd.img']}\n")
    return root


def write_build(folder: Path, ks_sha: str, *, build_id: str, signed: bool) -> Path:
    """A rehearsal build's folder as the backend writes it: the image, manifest.json, the SPDX SBOM, the in-toto
    attestation, CHECKSUM over all of them and, when *signed*, CHECKSUM.asc made by gpg with the test key."""
    from ccis_workbench.core import provenance, sbom
    from ccis_workbench.core.artifacts import checksum_text

    folder.mkdir(parents=True)
    image = folder / f"{PROFILE}.x86_64.qcow2"
    image.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    manifest = {"build_id": build_id, "profile": PROFILE, "release": "centos-stream-9", "target": "openstack",
                "arch": "x86_64", "kickstart_sha256": ks_sha, "rehearsal": True, "accel": "tcg",
                "domain_type": "qemu", "artifacts": [{"file": image.name, "size": image.stat().st_size,
                                                      "sha256": hashlib.sha256(image.read_bytes()).hexdigest()}]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    packages = sbom.parse_packages(["bash-5.1.8-9.el9.x86_64", "busybox-1.36.1-1.el9.x86_64",
                                    "kernel-5.14.0-427.el9.x86_64"])
    doc = sbom.spdx_document(image.name, packages, created="2026-01-01T00:00:00+00:00", rehearsal=True,
                             kickstart_sha256=ks_sha, tool="ccis-workbench-test")
    (folder / sbom.SBOM_NAME).write_text(sbom.sbom_json(doc))
    files = [image, folder / "manifest.json", folder / sbom.SBOM_NAME]
    subjects = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    st = provenance.statement(subjects=subjects, manifest=manifest, catalog={"path": str(SNAP), "commit": None,
                                                                            "dirty": None},
                              dependencies=[], started="2026-01-01T00:00:00+00:00",
                              finished="2026-01-01T00:05:00+00:00", host="snapshot-host")
    (folder / provenance.PROVENANCE_NAME).write_text(provenance.statement_json(st))
    files.append(folder / provenance.PROVENANCE_NAME)
    (folder / "CHECKSUM").write_text(checksum_text(files))
    if signed:
        subprocess.run(["gpg", "--batch", "--yes", "--local-user", TEST_KEY_FPR, "--armor", "--detach-sign",
                        "--output", str(folder / "CHECKSUM.asc"), str(folder / "CHECKSUM")], capture_output=True,
                       check=True)
    return folder


def composed_sha(root: Path) -> str:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.propose import sha256_text

    cat = Catalog.load(root)
    return sha256_text(Composer(cat).compose(cat.load_profile(PROFILE)).text)


def build_runner(*, release: threading.Event | None = None, fail: bool = False, signed: bool = False):
    """A stand-in for the libvirt build: the stages, console lines and a note a build reports; then it waits for
    *release* (or a cancel), and ends with an installer failure or the build folder it wrote."""

    def run(plan: Any, monitor: Any) -> Path:
        monitor.stage("install", f"domain {plan.name} (qemu)")
        for line in ("Starting installer, one moment...\r\n", "anaconda 34.25.4.9 for CentOS Stream 9 started.\r\n",
                     "Running pre-installation scripts\r\n", "Installing software 118/342\r\n"):
            monitor.output("console", line)
        monitor.note("info", "installer log: 4 lines")
        monitor.flush()
        if release is not None:
            while not release.is_set() and not monitor.cancelled():
                release.wait(0.05)
            if monitor.cancelled():
                raise WorkbenchError("Build cancelled", "the build was cancelled")
        if fail:
            raise build_failed("failed", "A %post script failed", "the installer reported: %post script failed",
                               "the script's output is in installer.log",
                               ["Error: %post script failed (exit status 1)", "+ systemctl enable nope.service"])
        return write_build(Path(plan.artifact_dir), plan.kickstart_sha256, build_id=plan.build_id, signed=signed)

    return run


def build_failed(status: str, title: str, message: str, hint: str, lines: list[str]) -> Exception:
    from ccis_workbench.core.errors import WorkbenchError as Base

    try:
        from ccis_workbench.backends.libvirt_build import BuildFailed, BuildResult
    except ImportError:  # libvirt-python missing: the same ending through a plain error
        return Base(title, message, hint=hint)
    return BuildFailed(BuildResult(status, title, message, hint, status, lines))


def snap_app(root: Path, clock: HandClock, *, build: Any = None, boot_test: Any = None) -> WorkbenchApp:
    from ccis_workbench.ui.screens.boottest import BootTestSettings
    from ccis_workbench.ui.screens.build import BuildSettings

    app = WorkbenchApp(root, capabilities=FixedCapabilities(SNAP_UI), profile=PROFILE,
                       runners=Runners(build=build, boot_test=boot_test, leftovers=lambda uri, kind, ident: [],
                                       ids=Counter(), clock=clock, today=lambda: datetime.date(2026, 1, 1)))
    app.build_settings = BuildSettings(tree="dir", location=str(SNAP / "tree"), accel="tcg", memory_mb=512,
                                       disk_size="96M", output_dir=str(SNAP / "out"), inactivity_timeout=60.0,
                                       total_timeout=240.0)
    app.boot_test_settings = BootTestSettings(accel="tcg", output_dir=str(SNAP / "reports"))
    return app


async def until(pilot, done, what: str, rounds: int = 400) -> None:  # type: ignore[no-untyped-def]
    """Pause until *done()* holds (the stand-in runners work in threads); fail naming *what* if it never does."""
    for _ in range(rounds):
        if done():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}")


async def steady(pilot) -> None:  # type: ignore[no-untyped-def]
    """Messages handled and the widgets idle once more: a DataTable measures its columns when idle, and a picture
    taken before that shows them cut to their titles."""
    for _ in range(3):  # (never waits for the workers: a run may still be going, on purpose)
        await pilot.pause(0.1)
    # a table's cells drawn before it measured its columns stay cached in pieces: the same picture, but another
    # SVG; drawing them again (the cursor off and on clears its caches) gives one SVG whatever the order of events
    for table in pilot.app.screen.query(DataTable):
        table.show_cursor = not table.show_cursor
        table.show_cursor = not table.show_cursor
    for field in pilot.app.screen.query(Input):  # a blinking cursor is on or off depending on the moment
        field.cursor_blink = False
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def open_run_screen(pilot, key: str) -> Any:  # type: ignore[no-untyped-def]
    await settle(pilot)
    pilot.app.screen.query_one("#kickstart", KickstartView).focus()
    await pilot.press(key)
    await settle(pilot)
    return pilot.app.screen


def text_of(widget: Any) -> str:
    return str(widget.render())


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_build_before_a_run(snap_compare, snap: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = await open_run_screen(pilot, "b")
        await until(pilot, lambda: screen.plan is not None, "the plan")
        assert "Build plan 20260101-000000-0001" in text_of(screen.query_one("#build-plan"))
        await steady(pilot)

    assert snap_compare(snap_app(snap / "catalog", HandClock(), build=build_runner()), terminal_size=size,
                        run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_build_during_a_run(snap_compare, snap: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    clock = HandClock()
    release = threading.Event()

    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = await open_run_screen(pilot, "b")
        await until(pilot, lambda: screen.plan is not None, "the plan")
        await pilot.press("f2")
        await until(pilot, lambda: len("".join(screen.console_text).splitlines()) == 4, "four console lines")
        clock.now += 42  # the timer shows 00:42 until the test moves the clock again
        await until(pilot, lambda: "00:42" in text_of(screen.query_one("#build-status")), "the timer at 00:42")
        assert "running · stage install" in text_of(screen.query_one("#build-status"))
        await steady(pilot)

    try:
        assert snap_compare(snap_app(snap / "catalog", clock, build=build_runner(release=release)),
                            terminal_size=size, run_before=go)
    finally:
        release.set()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("ending", ["success", "signed", "failure"])
def test_snapshot_build_after_a_run(snap_compare, snap: Path, size: tuple[int, int], ending: str) -> None:  # type: ignore[no-untyped-def]
    """After success the result box shows the signature (the key id, or UNSIGNED), the SBOM's package count, the
    attestation and what `verify` said of the folder, checked in a worker after the build."""
    clock = HandClock()
    release = threading.Event()

    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = await open_run_screen(pilot, "b")
        await until(pilot, lambda: screen.plan is not None, "the plan")
        await pilot.press("f2")
        await until(pilot, lambda: len("".join(screen.console_text).splitlines()) == 4, "four console lines")
        clock.now += 95  # the build ends at 01:35; the timer stays there
        release.set()
        await until(pilot, lambda: screen.ended is not None, "the ending")
        if ending != "failure":
            await until(pilot, lambda: screen.verification is not None, "the verification")
            box = text_of(screen.query_one("#build-ending"))
            assert "✓ VERIFIED" in box and "SPDX 2.3, 3 packages" in box, box
            assert (f"key {TEST_KEY_FPR[-16:]}" if ending == "signed" else "UNSIGNED") in box, box
        await settle(pilot)
        assert "01:35" in text_of(screen.query_one("#build-status"))
        # the notification's timer is Textual's own: take it away so the picture does not depend on the time
        pilot.app.clear_notifications()
        await steady(pilot)

    runner = build_runner(release=release, fail=ending == "failure", signed=ending == "signed")
    try:
        assert snap_compare(snap_app(snap / "catalog", clock, build=runner), terminal_size=size, run_before=go)
    finally:
        release.set()


def boot_runner(*, release: threading.Event | None = None):
    """A stand-in for the boot test: the console up to the login, the first check passes, the second fails, the
    rest pass; with *release*, it waits after the first check (the second shown running) until released."""
    from ccis_workbench.core.report import BootTestResult, CheckResult

    def run(setup: Any, options: Any, monitor: Any, on_result: Any) -> Any:  # returns its result, as a runner may
        ids = [s.check.id for s in setup.plan.selected]
        monitor.stage("boot", "waiting for the login prompt")
        monitor.output("console", "CCIS Workbench rehearsal 0.1\r\nKernel 6.1.0 on an x86_64\r\n\r\n")
        monitor.output("console", "rehearsal login: ccis-test\r\nPassword: \r\n$ ")
        monitor.flush()
        monitor.stage("checks", f"{len(ids)} checks")
        results = []
        for n, cid in enumerate(ids):
            monitor.check(cid, "running", "")
            if n == 1 and release is not None:
                while not release.is_set() and not monitor.cancelled():
                    release.wait(0.05)
            ok = n != 1
            monitor.check(cid, "passed" if ok else "failed", "ok" if ok else "exit status 1, expected 0")
            results.append(CheckResult(cid, "d", "spec", "true", "exit 0", "passed" if ok else "failed",
                                       "" if ok else "exit status 1, expected 0", 0 if ok else 1, "", 0.1))
        return BootTestResult(run_id=options.run_id, label=setup.label, image=str(setup.image),
                              started="2026-01-01T00:00:00+00:00", uri=options.uri, domain="ccis-boottest-x",
                              domain_type="qemu", seed=setup.seed, user="ccis-test", ending="completed",
                              ending_message="every check ran", boot_to_login=3.0, checks_time=1.0, total_time=5.0,
                              checks=results, rehearsal=True)

    return run


def built(root: Path, *, signed: bool = False) -> Path:
    return write_build(SNAP / "out" / f"{PROFILE}-20251231-120000-0001", composed_sha(root),
                       build_id="20251231-120000-0001", signed=signed)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("moment", ["before", "during", "after"])
def test_snapshot_boot_test(snap_compare, snap: Path, size: tuple[int, int], moment: str) -> None:  # type: ignore[no-untyped-def]
    clock = HandClock()
    release = threading.Event()
    root = snap / "catalog"
    app = snap_app(root, clock, boot_test=boot_runner(release=release))
    app.last_artifact_dir = str(built(root))

    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = await open_run_screen(pilot, "x")
        await until(pilot, lambda: screen.setup is not None, "the artifact and its checks")
        if moment == "before":
            await steady(pilot)
            return
        await pilot.press("f2")
        await until(pilot, lambda: list(screen.statuses.values())[1:2] == ["running"], "the second check running")
        clock.now += 17
        if moment == "during":
            await until(pilot, lambda: "00:17" in text_of(screen.query_one("#boot-status")), "the timer at 00:17")
            await steady(pilot)
            return
        release.set()
        await until(pilot, lambda: screen.result is not None, "the result")
        await settle(pilot)
        assert (SNAP / "reports" / "report.json").is_file()
        pilot.app.clear_notifications()
        await steady(pilot)

    try:
        assert snap_compare(app, terminal_size=size, run_before=go)
    finally:
        release.set()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_snapshot_propose_with_evidence(snap_compare, snap: Path, size: tuple[int, int], signed: bool) -> None:  # type: ignore[no-untyped-def]
    """Rows ok (lint, diff), REHEARSAL (the build's manifest and CHECKSUM) and missing (no boot-test report), each
    with whether it verified; the signature line (good, with the key, or UNSIGNED)."""
    root = snap / "catalog"
    app = snap_app(root, HandClock())
    app.last_artifact_dir = str(built(root, signed=signed))

    async def go(pilot) -> None:  # type: ignore[no-untyped-def]
        screen = await open_run_screen(pilot, "u")
        await until(pilot, lambda: screen.evidence is not None or screen.error is not None, "the evidence")
        await settle(pilot)
        assert screen.error is None, screen.error
        statuses = {i.kind: i.status for i in screen.evidence.items}
        assert statuses["manifest"] == "ok" and statuses["boot-test"] == "missing", statuses
        assert screen.evidence.rehearsal
        line = text_of(screen.query_one("#propose-signature"))
        assert ("✓ good: Good signature from" in line and TEST_KEY_FPR in line) if signed else "UNSIGNED" in line
        await steady(pilot)

    assert snap_compare(app, terminal_size=size, run_before=go)
