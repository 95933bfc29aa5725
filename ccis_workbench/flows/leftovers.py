"""What runs killed on this host (SIGKILL, a crash) left behind, removed: written once for both faces.

A run is dead when its lock file (under the cache's `locks/`) names this host, nobody holds it and its pid is gone.
`build` and `boot-test` remove such leftovers themselves before they start (the backends call the same
`reap_dead_runs`); `doctor` and the TUI's host check call `remove_dead_runs` here and show what it says.
"""

from __future__ import annotations

from ccis_workbench.flows.build import libvirt_backend


def remove_dead_runs(uri: str, pool: str) -> list[str]:
    """Remove the domains, volumes, stale locks, half-written downloads and boot-test credentials of dead runs on
    *uri*; one line per dead run or file, e.g. "removed the leftovers of a dead build (pid N): DOMAIN, VOLUMES".
    libvirt not reachable: only the local files are looked at (the caller says libvirt is down)."""
    said: list[str] = []
    backend = libvirt_backend("ccis_workbench.backends.libvirt_build")
    backend.reap_dead_runs(uri, pool, said.append)
    return said
