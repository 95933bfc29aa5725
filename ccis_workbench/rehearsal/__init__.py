"""The REHEARSAL install tree: a hermetic stand-in for a CentOS install tree, built from the host's packages.

See docs/architecture.md, "The rehearsal tree". It is always labelled rehearsal, never CentOS.
"""

from __future__ import annotations

from ccis_workbench.rehearsal.tree import build_tree, find_host_parts

__all__ = ["build_tree", "find_host_parts"]
