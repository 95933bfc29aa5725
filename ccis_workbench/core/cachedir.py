"""Where the workbench keeps what it can make again: downloaded install trees, compiled templates, locks, logs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/ccis-workbench`, else `~/.cache/ccis-workbench`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccis-workbench"
