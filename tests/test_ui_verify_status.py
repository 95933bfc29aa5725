"""The TUI shows whether a build's evidence verifies (issue 15): after a build the build screen runs `verify` on the
artifact folder in a worker and says VERIFIED or NOT VERIFIED with the failed checks; the propose screen says per
evidence row whether it verified, and the folder's signature status.

The builds are the snapshot tests' stand-in runner (it reports through the screen's real monitor and writes the
folder as a build does); `verify` and gpgv run for real. A tampered folder (a byte of the image flipped after
CHECKSUM was written, or CHECKSUM changed after it was signed) must show NOT VERIFIED with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from ccis_workbench.ui.app import Runners, WorkbenchApp
from ccis_workbench.ui.capabilities import FixedCapabilities
from ccis_workbench.ui.screens.build import BuildSettings
from tests.test_ui_snapshots import (
    PROFILE,
    SNAP_UI,
    TEST_KEY_FPR,
    Counter,
    HandClock,
    build_runner,
    composed_sha,
    make_tree,
    open_run_screen,
    signing_home,
    text_of,
    until,
    write_build,
)
from tests.test_ui_support import REPO, make_catalog, settle, sync

IMAGE = f"{PROFILE}.x86_64.qcow2"


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[Path]:
    """A GnuPG home holding the throwaway test key, its public key in gpgv's default keyring (GNUPGHOME)."""
    with signing_home(tmp_path / "gnupg") as home:
        yield home


def make_app(tmp_path: Path, runner: Any = None) -> WorkbenchApp:
    root = make_catalog(tmp_path)
    (root / "kickstarts/testspec.yaml").write_bytes((REPO / "kickstarts/testspec.yaml").read_bytes())
    make_tree(tmp_path / "tree")
    app = WorkbenchApp(root, capabilities=FixedCapabilities(SNAP_UI), profile=PROFILE,
                       runners=Runners(build=runner, leftovers=lambda uri, kind, ident: [], ids=Counter(),
                                       clock=HandClock()))
    app.build_settings = BuildSettings(tree="dir", location=str(tmp_path / "tree"), accel="tcg", memory_mb=512,
                                       disk_size="96M", output_dir=str(tmp_path / "out"))
    return app


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def tampering(kind: str):  # type: ignore[no-untyped-def]
    """The stand-in build, then its folder changed behind CHECKSUM's (or the signature's) back."""
    build = build_runner(signed=True)

    def run(plan: Any, monitor: Any) -> Path:
        folder = build(plan, monitor)
        if kind == "image":
            flip_a_byte(folder / IMAGE)
        else:  # CHECKSUM rewritten (one of its lines dropped) after it was signed
            lines = (folder / "CHECKSUM").read_text().splitlines(keepends=True)
            (folder / "CHECKSUM").write_text("".join(ln for ln in lines if "sbom.spdx.json" not in ln))
        return folder

    return run


async def build_and_verify(app: WorkbenchApp, pilot: Any) -> tuple[Any, str]:  # type: ignore[no-untyped-def]
    screen = await open_run_screen(pilot, "b")
    await until(pilot, lambda: screen.plan is not None, "the plan")
    await pilot.press("f2")
    await until(pilot, lambda: screen.ended is not None, "the ending")
    await until(pilot, lambda: screen.verification is not None, "the verification")
    await settle(pilot)
    return screen, text_of(screen.query_one("#build-ending"))


@sync
async def test_a_signed_build_shows_its_key_sbom_attestation_and_verified(tmp_path: Path, gnupg: Path) -> None:
    app = make_app(tmp_path, build_runner(signed=True))
    async with app.run_test(size=(120, 36)) as pilot:
        screen, box = await build_and_verify(app, pilot)
        assert screen.ended.status == "success"
        assert "verify: ✓ VERIFIED (signed, REHEARSAL build: not CentOS)" in box, box
        assert f"signature: ✓ signed, key {TEST_KEY_FPR[-16:]}, CCIS Snapshot Test Signer" in box, box
        assert "SBOM: sbom.spdx.json, SPDX 2.3, 3 packages" in box, box
        assert "attestation: provenance.intoto.json, in-toto Statement v1, SLSA v1" in box, box
        assert "-ok" in screen.query_one("#build-ending").classes


@pytest.mark.parametrize("kind", ["image", "checksum"])
@sync
async def test_a_tampered_artifact_folder_shows_not_verified_with_the_reason(tmp_path: Path, gnupg: Path,
                                                                             kind: str) -> None:
    app = make_app(tmp_path, tampering(kind))
    async with app.run_test(size=(120, 36)) as pilot:
        screen, box = await build_and_verify(app, pilot)
        assert screen.ended.status == "success"  # the build ran; its evidence does not hold
        assert "verify: ✗ NOT VERIFIED" in box, box
        if kind == "image":
            assert f"file {IMAGE}: sha256 " in box and "but CHECKSUM says" in box, box
        else:
            assert "signature: ✗ BAD" in box and "BAD or unknown signature" in box, box
            assert "file sbom.spdx.json: not covered by CHECKSUM" in box, box
        assert "-bad" in screen.query_one("#build-ending").classes
        events = "\n".join(str(line.text) for line in screen.query_one("#build-events").lines)
        assert "verify: ✗ NOT VERIFIED" in events

        # the propose screen says the same of that folder: not verified, and why
        await pilot.press("escape")
        await settle(pilot)
        propose = await open_run_screen(pilot, "u")
        await until(pilot, lambda: propose.evidence is not None or propose.error is not None, "the evidence")
        await settle(pilot)
        assert propose.error is None, propose.error
        table = propose.query_one("#propose-evidence", DataTable)
        assert str(table.get_cell("manifest", "verified")) == "✗ NOT VERIFIED"
        assert str(table.get_cell("manifest", "status")) == "unverified"
        detail = str(table.get_cell("manifest", "detail"))
        signature = text_of(propose.query_one("#propose-signature"))
        if kind == "image":
            assert f"unverified: {IMAGE}: sha256" in detail, detail
            assert "signature: ✓ good" in signature, signature  # CHECKSUM itself is as signed
        else:
            assert "CHECKSUM.asc: BAD or unknown signature" in detail, detail
            assert "signature: ✗ BAD" in signature, signature


@sync
async def test_propose_rows_say_verified_for_a_good_signed_build(tmp_path: Path, gnupg: Path) -> None:
    app = make_app(tmp_path)
    root = Path(app.catalog_root)
    folder = write_build(tmp_path / "out" / "b1", composed_sha(root), build_id="b1", signed=True)
    app.last_artifact_dir = str(folder)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_run_screen(pilot, "u")
        await until(pilot, lambda: screen.evidence is not None, "the evidence")
        await settle(pilot)
        table = screen.query_one("#propose-evidence", DataTable)
        verified = {key.value: str(table.get_cell(key, "verified")) for key in table.rows}
        assert verified == {"lint": "made here", "diff": "made here", "manifest": "✓ verified",
                            "checksum": "✓ verified", "boot-test": "—"}, verified
        signature = text_of(screen.query_one("#propose-signature"))
        assert "signature: ✓ good: Good signature from \"CCIS Snapshot Test Signer" in signature, signature
        assert f"(key {TEST_KEY_FPR})" in signature
