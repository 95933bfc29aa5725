"""SVG snapshots of the main screens (pytest-textual-snapshot). Regenerate: pytest tests/test_ui_snapshots.py
--snapshot-update, then review the SVGs in the diff. A fixed host status and a private catalog keep them stable."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import SelectionList

from ccis_workbench.ui.widgets.kickstart_view import KickstartView
from tests.test_ui_support import make_app, make_catalog, settle


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
