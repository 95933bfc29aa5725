"""Regression: ticking a second overlay that declares variables crashed the TUI (DuplicateIds: the old inputs were
still being removed when the new ones, with the same ids, were mounted), and the process exited 0. From launch,
`Tab Tab Space Down Space`; also when removing one of two, through the palette's toggle, with a mouse click, and
with fast toggling."""

from __future__ import annotations

from tests.test_ui_support import REPO, make_app, settle, sync


def inputs(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [w.id for w in app.compose_screen.query("#overlay-vars Input")]


def expected(app) -> list[str]:  # type: ignore[no-untyped-def]
    screen = app.compose_screen
    cat = screen.workbench.catalog
    return [f"ovar-{v}" for o in screen.choice.overlays for v in cat.overlays[o].variables]


@sync
async def test_second_overlay_with_variables_from_the_keyboard() -> None:
    app = make_app(REPO, profile=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        for key in ("tab", "tab", "space", "down", "space"):
            await pilot.press(key)
            await pilot.pause()
        await settle(pilot)
        assert app.is_running
        assert len(app.compose_screen.choice.overlays) == 2
        assert inputs(app) == expected(app) and len(inputs(app)) >= 3
        await pilot.press("space")  # remove the second again
        await settle(pilot)
        assert app.is_running and len(app.compose_screen.choice.overlays) == 1
        assert inputs(app) == expected(app)


@sync
async def test_fast_toggles_through_the_palette_api_end_in_the_right_inputs() -> None:
    app = make_app(REPO, profile=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.compose_screen
        with_vars = [o for o, ov in sorted(screen.workbench.catalog.overlays.items()) if ov.variables
                     and not screen.overlay_states.get(o)]
        assert len(with_vars) >= 2
        for name in with_vars[:3] + with_vars[:1] + with_vars[1:2] + with_vars[:1]:  # no awaiting in between
            screen.toggle_overlay(name)
        await settle(pilot)
        assert app.is_running
        assert inputs(app) == expected(app)


@sync
async def test_second_overlay_with_a_mouse_click() -> None:
    app = make_app(REPO, profile=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        overlays = app.compose_screen.query_one("#overlays")
        await pilot.click(overlays, offset=(2, 0))
        await settle(pilot)
        await pilot.click(overlays, offset=(2, 1))
        await settle(pilot)
        assert app.is_running
        assert len(app.compose_screen.choice.overlays) == 2
        assert inputs(app) == expected(app)


@sync
async def test_an_unexpected_error_is_saved_and_never_exits_0(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An unhandled error must not end the app silently with status 0: the traceback and the choice in use are
    saved to a file, and the return code is 1."""
    import pytest

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    app = make_app(REPO, profile="openstack-stream9")
    with pytest.raises(RuntimeError, match="simulated"):
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)

            def broken() -> None:
                raise RuntimeError("simulated failure in a key handler")

            monkeypatch.setattr(app.compose_screen, "action_toggle_provenance", broken)
            app.compose_screen.query_one("#kickstart").focus()
            await pilot.press("v")
            await pilot.pause()
    assert app.return_code == 1
    assert app.crash_report is not None and app.crash_report.parent == tmp_path / "ccis-workbench"
    text = app.crash_report.read_text()
    assert "RuntimeError: simulated failure in a key handler" in text
    assert "release: centos-stream-9" in text and "target: openstack" in text


@sync
async def test_a_burst_of_keys_toggles_what_each_key_was_on() -> None:
    """Keys that arrive at once (a fast typist, tmux, a paste): `space down space` chose nothing, because Textual's
    SelectionList toggled the option highlighted when its message was handled (the second one, twice)."""
    from textual import events

    app = make_app(REPO, profile=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("tab", "tab")
        await settle(pilot)
        names = [app.compose_screen.query_one("#overlays").get_option_at_index(i).value for i in range(3)]
        for key in ("space", "down", "space", "down", "space", "up", "space"):  # posted without waiting
            app.post_message(events.Key(key, " " if key == "space" else None))
        await settle(pilot)
        assert app.is_running
        assert app.compose_screen.choice.overlays == [names[0], names[2]]
        assert list(app.compose_screen.query_one("#overlays").selected) == [names[0], names[2]]
        assert inputs(app) == expected(app)
