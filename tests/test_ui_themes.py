"""Every text and accent colour of the workbench's themes reaches a contrast ratio of 4.5:1 (WCAG AA) on every
background it is drawn on. Textual's own light theme drew its orange accent (the field labels, warnings, the
footer's keys) at about 1.3:1 on light grey."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.color import Color
from textual.theme import BUILTIN_THEMES

from ccis_workbench.ui.themes import DARK, LIGHT, workbench_themes
from ccis_workbench.ui.widgets.kickstart_view import KickstartView
from ccis_workbench.ui.widgets.panels import ErrorPanel, StatusLine

UI = Path(__file__).resolve().parents[1] / "ccis_workbench" / "ui"

#: Colours used for text: Textual's text variables, and every `color: $X` in the workbench's stylesheet and its
#: widgets' CSS (the kickstart view's syntax colours drew options in $secondary, 1.9:1 on the dark background).
CSS_TEXT = sorted(set(re.findall(r"(?<![-\w])color: \$([\w-]+)", (UI / "workbench.tcss").read_text() +
                                 KickstartView.DEFAULT_CSS + ErrorPanel.DEFAULT_CSS + StatusLine.DEFAULT_CSS)))
TEXT = tuple(sorted(set(CSS_TEXT) | {"foreground", "text", "text-muted", "text-accent", "text-error", "text-warning",
                                       "text-success", "text-primary", "text-secondary"}))
BACKGROUNDS = ("background", "surface", "panel")


def luminance(c: Color) -> float:
    def channel(v: int) -> float:
        x = v / 255
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)


def contrast(a: Color, b: Color) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def drawn(value: str, background: Color) -> Color:
    """The colour a variable shows as on *background* ("auto N%" and translucent colours are blended)."""
    if value.startswith("auto"):
        parts = value.split()
        return background.get_contrast_text(float(parts[1].rstrip("%")) / 100 if len(parts) > 1 else 1.0)
    c = Color.parse(value)
    return background.blend(c.with_alpha(1), c.a) if c.a < 1 else c


def low_contrast(theme_variables: dict[str, str]) -> list[str]:
    out = []
    for bg_name in BACKGROUNDS:
        bg = Color.parse(theme_variables[bg_name])
        for fg in TEXT:
            ratio = contrast(drawn(theme_variables[fg], bg), bg)
            if ratio < 4.5:
                out.append(f"{fg} on {bg_name}: {ratio:.1f}:1")
    footer = Color.parse(theme_variables["footer-background"])
    for fg in ("footer-key-foreground", "footer-description-foreground", "footer-foreground"):
        if fg in theme_variables and (ratio := contrast(drawn(theme_variables[fg], footer), footer)) < 4.5:
            out.append(f"{fg} on footer-background: {ratio:.1f}:1")
    return out


def variables(theme) -> dict[str, str]:  # type: ignore[no-untyped-def]
    v = theme.to_color_system().generate()
    v.update(theme.variables)
    return v


@pytest.mark.parametrize("name", [DARK, LIGHT])
def test_every_text_colour_reaches_4_5_to_1(name: str) -> None:
    (theme,) = [t for t in workbench_themes() if t.name == name]
    assert low_contrast(variables(theme)) == []


def test_the_stylesheets_text_colours_are_all_checked() -> None:
    assert {"accent", "text-muted", "text-error", "text-primary", "text-secondary"} <= set(CSS_TEXT)


def test_the_check_catches_textual_s_light_theme() -> None:
    """The control: the theme the workbench used to switch to fails the same check."""
    problems = low_contrast(variables(BUILTIN_THEMES["textual-light"]))
    assert any(p.startswith("accent on panel: 1.3") for p in problems), problems


def test_the_app_uses_them_and_ctrl_t_switches_between_them() -> None:
    import asyncio

    from tests.test_ui_support import make_app, make_catalog, settle

    async def go() -> None:
        import tempfile
        from pathlib import Path

        app = make_app(make_catalog(Path(tempfile.mkdtemp())))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.theme == DARK
            await pilot.press("ctrl+t")
            assert app.theme == LIGHT
            await pilot.press("ctrl+t")
            assert app.theme == DARK

    asyncio.run(go())
