"""What the app can talk to on this host: the libvirt connection and the accelerator.

The app receives a `Capabilities` object in its constructor (harlequin's adapter idea), so tests and the
screenshot script choose what it reports. `check_host()` blocks (it may open a libvirt connection) and is only
ever called from a thread worker. libvirt is imported inside that call, never at module import time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ccis_workbench.flows.build import describe_accel
from ccis_workbench.flows.settings import Settings

DEFAULT_URI = "qemu:///system"


@dataclass(frozen=True)
class HostStatus:
    """The libvirt connection and accelerator as last checked.

    reachable: True/False once checked, None while not checked yet.
    """

    uri: str
    reachable: bool | None
    detail: str
    accelerator: str
    #: what the check did besides looking, one line each (e.g. "removed the leftovers of a dead build (pid N): ...")
    notes: tuple[str, ...] = ()

    def summary(self, short: bool = False) -> str:
        """One line for the status bar (*short*: for 80 columns)."""
        if short:
            state = {None: "not checked", True: "ok"}.get(self.reachable, "unreachable")
            return f"{self.uri} {state} · {self.accelerator}"
        if self.reachable is None:
            state = self.detail or "not checked"
        elif self.reachable:
            state = f"reachable ({self.detail})" if self.detail else "reachable"
        else:
            state = f"unreachable: {self.detail}"
        return f"libvirt {self.uri}: {state} · accel {self.accelerator}"


class Capabilities:
    """Base: reports what the host offers. Subclasses override `check_host`."""

    #: Shown in the status line.
    name = "none"

    def initial_status(self) -> HostStatus:
        """The status shown before the check finishes (must not block)."""
        return HostStatus(self.uri(), None, "checking…", self.accelerator())

    def __init__(self, settings: Settings | None = None) -> None:
        #: the workbench's settings (flows.settings): the same URI and accelerator as the CLI
        self.settings = settings or Settings.load()

    def uri(self) -> str:
        return str(self.settings.uri)

    def accelerator(self) -> str:
        """The accelerator a build would use, as the status line says it (flows.build.describe_accel)."""
        return describe_accel(str(self.settings.accel))

    def check_host(self) -> HostStatus:
        """Blocking check of the libvirt connection (called from a thread worker)."""
        return HostStatus(self.uri(), None, "not checked", self.accelerator())

    def build_unavailable(self, status: HostStatus, action: str) -> str | None:
        """Why *action* ("build" or "boot-test") cannot run now, or None when it can."""
        if status.reachable is None:
            return f"{action} needs libvirt, which has not been checked yet ({status.detail})"
        if not status.reachable:
            return f"{action} needs libvirt at {status.uri}: {status.detail}"
        return None


class LocalCapabilities(Capabilities):
    """The real host: tries libvirt-python inside the worker thread."""

    name = "local"

    def check_host(self) -> HostStatus:
        from ccis_workbench.flows.build import known_kvm_works

        uri = self.uri()
        accel = describe_accel(str(self.settings.accel), known_kvm_works(uri))
        try:
            import libvirt  # type: ignore[import-not-found]
        except ImportError:
            return HostStatus(uri, False, "libvirt-python not installed", accel)
        error = libvirt.libvirtError
        try:
            libvirt.registerErrorHandler(lambda *_: None, None)
            conn = libvirt.openReadOnly(uri)
        except error as exc:
            return HostStatus(uri, False, _first_line(str(exc)) or "cannot connect", accel)
        try:
            version = conn.getLibVersion()
            detail = f"libvirt {version // 1000000}.{version // 1000 % 1000}.{version % 1000}"
        except error as exc:
            detail = _first_line(str(exc))
        finally:
            with contextlib.suppress(error):  # closing a broken connection: nothing more to say
                conn.close()
        return HostStatus(uri, True, detail, accel, self._remove_dead_runs(uri))

    def _remove_dead_runs(self, uri: str) -> tuple[str, ...]:
        """What runs killed on this host left in the pool, removed (flows.leftovers, as `doctor` does)."""
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.flows.leftovers import remove_dead_runs

        try:
            return tuple(remove_dead_runs(uri, str(self.settings.pool)))
        except (WorkbenchError, OSError) as exc:
            return (f"could not remove the leftovers of dead runs: {exc}",)


class FixedCapabilities(Capabilities):
    """Reports a fixed status: for tests, snapshots and screenshots (no clock, no host state)."""

    name = "fixed"

    def __init__(self, status: HostStatus | None = None) -> None:
        super().__init__()
        self.status = status or HostStatus(DEFAULT_URI, None, "not checked", "tcg")

    def initial_status(self) -> HostStatus:
        return self.status

    def check_host(self) -> HostStatus:
        return self.status


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]
