"""Paths typed in the TUI are relative to the catalog in use, not to the folder the app was started from (which
the user cannot see on the screen); the fields' placeholders say so."""

from __future__ import annotations

from pathlib import Path


def in_catalog(root: str | Path, text: str) -> str:
    """*text* as an absolute path: `~` expanded, a relative path taken from the catalog root *root*."""
    text = text.strip()
    if not text:
        return ""
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else Path(root) / p)


def relative_hint(root: str | Path) -> str:
    """The placeholder's note for a path field."""
    return f"relative to {root}"


def catalog_label(root: str | Path) -> str:
    """The catalog in the title: its folder's name (two clones side by side differ there), "(read-only)" for the
    copy a wheel installed."""
    from ccis_workbench.flows.settings import is_installed_catalog

    path = Path(root)
    return "installed catalog (read-only)" if is_installed_catalog(path) else path.resolve().name
