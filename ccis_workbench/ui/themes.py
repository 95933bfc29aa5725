"""The workbench's two themes: Textual's own dark and light themes with every text and accent colour at a contrast
ratio of at least 4.5:1 (WCAG AA) on the backgrounds they are drawn on. Textual's light theme draws its orange
accent at about 1.3:1 on light grey (the field labels, warnings and the footer's keys were hard to read on a
projector at a Dojo); the light theme here keeps its hues, darkened until they read."""

from __future__ import annotations

from textual.theme import BUILTIN_THEMES, Theme

DARK = "ccis-dark"
LIGHT = "ccis-light"


def workbench_themes() -> list[Theme]:
    """Textual's dark theme with a lighter secondary and error (the kickstart view's section names and removed
    packages were 3.4:1 and 2.5:1 on its panels), and its light theme with darker accent, warning, success and
    error (1.3:1 to 1.8:1 on light grey before)."""
    dark = BUILTIN_THEMES["textual-dark"]
    light = BUILTIN_THEMES["textual-light"]
    return [
        Theme(name=DARK, primary=dark.primary, secondary="#3d8fd6", warning=dark.warning, error="#f27d93",
              success=dark.success, accent=dark.accent, foreground=dark.foreground, dark=True),
        Theme(name=LIGHT, primary=light.primary, secondary="#005a9e", warning="#723f00", error="#a3203d",
              success="#145a28", accent="#723f00", foreground=light.foreground, background=light.background,
              surface=light.surface, panel=light.panel, dark=False,
              variables={"footer-key-foreground": "#004f8a", "block-cursor-foreground": "#ffffff"}),
    ]
