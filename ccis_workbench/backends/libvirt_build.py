"""Run a BuildPlan on libvirt: owned pool, uploaded volumes, transient domain, live console, endings, cleanup.

Every file the guest needs travels through storage volumes (upload/download streams), so a remote
`qemu+ssh://` host needs no shared filesystem. The domain is created paused, the console and the installer's
log channel are attached, then it is resumed, so no output is lost. Each ending is explained in one sentence:
success, installer failure (with the offending lines), guest stopped early, no output for N seconds (with
the other accelerator as a hint), total time limit, cancel, libvirtd lost. Whatever happens, the domain is
destroyed and the volumes are deleted before `run` returns; `gc` finds what a killed process left behind.

Under `--accel auto` with KVM, the first attempt is probed (`KvmProbe`): when the kernel proper prints nothing on
the serial console within `KVM_PROBE_WINDOW` seconds (KVM guests hang right after the real-mode setup on some
hosts), the domain is destroyed, every volume deleted, and the same plan runs once more under TCG; the verdict is
recorded for the host (libvirt_session), the monitor, console.log and manifest.json (`accel_fallback`) say so.
`doctor` probes each accelerator with a tiny real guest (`probe_accelerator`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from ccis_workbench.backends.emulator import (
    EMULATOR_DIED,
    FAULT_HINT,
    HOST_FAULT_RESTARTS,
    EmulatorFrozen,
    death_while_starting,
    died_while_starting,
    emulator_death,
    resume_within,
    start_within,
    stop_reason,
)
from ccis_workbench.backends.libvirt_session import (  # noqa: F401  (re-exported: the build's public names)
    RECONNECT_WINDOW,
    Session,
    build_is_live,
    build_lock,
    connect,
    dead_owners,
    download_volume,
    ensure_event_loop,
    ensure_pool,
    forget_dead_owner,
    hypervisor_key,
    read_verdict,
    reconnect,
    record_verdict,
    upload_file,
)
from ccis_workbench.core.artifacts import Producer
from ccis_workbench.core.boottest_plan import DOMAIN_PREFIX as BOOT_TEST_PREFIX
from ccis_workbench.core.boottest_plan import is_local_uri
from ccis_workbench.core.cachedir import cache_root
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.failure import FailureDetector, Verdict
from ccis_workbench.core.initrd import inject_kickstart
from ccis_workbench.core.installsource import USER_NET_HOST, sweep_partial_downloads
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import (
    DEFAULT_POOL,
    KVM_PROBE_WINDOW,
    LOG_CHANNEL,
    PREFIX,
    AccelFallback,
    BuildPlan,
    default_pool_path,
    kernel_output_seen,
    new_build_id,
    probe_domain_xml,
    under_tcg,
)
from ccis_workbench.core.seed import OWNER_FILE, credential_dirs, remove_stale_credentials

#: After a failure line, keep reading this long so the whole traceback is captured.
FAILURE_GRACE = 1.5
_BUILD_ID = re.compile(r"(\d{8}-\d{6}-[0-9a-f]{4})")


class BuildFailed(WorkbenchError):
    """The build ended without artifacts. `result` says how; exit status 1 (the input was fine)."""

    exit_status = 1

    def __init__(self, result: BuildResult) -> None:
        super().__init__(result.title, result.message, hint=result.hint)
        self.result = result
        self.logs = result.logs_dir


@dataclass
class BuildResult:
    status: str  # success | failed | stalled | timeout | cancelled | crashed | lost | host-fault (run again)
    title: str
    message: str
    hint: str = ""
    kind: str = ""  # failure kind from core.failure
    lines: list[str] = field(default_factory=list)
    artifact_dir: str | None = None
    logs_dir: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "title": self.title, "message": self.message, "hint": self.hint,
                "kind": self.kind, "lines": self.lines, "artifact_dir": self.artifact_dir,
                "logs_dir": self.logs_dir, "timings": self.timings}


class _Reader(threading.Thread):
    """Reads one domain stream (console or log channel) and hands text to the build; never touches UI."""

    def __init__(self, build: Build, channel: str, stream: libvirt.virStream) -> None:
        super().__init__(name=f"reader-{channel}", daemon=True)
        self.build, self.channel, self.stream = build, channel, stream
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.stream.recv(4096)
            except libvirt.libvirtError:
                break
            if isinstance(data, int) or not data:
                if data == -2:
                    continue
                break
            self.build.received(self.channel, data.decode("utf-8", "replace"))
        with contextlib.suppress(libvirt.libvirtError):
            self.stream.abort()


def auto_kvm(plan: BuildPlan) -> bool:
    """Whether a plan's run is probed: `--accel auto` that chose KVM (an explicit `--accel kvm` is not)."""
    return plan.options.accel == "auto" and plan.domain_type == "kvm"


@dataclass
class KvmProbe:
    """How a build (or boot test) under `--accel auto` finds out that KVM guests hang on this host.

    The first attempt's serial console is given to *detector* until it says the kernel proper runs; when it has
    not after *window* seconds (from the resume of the domain), the domain is destroyed, every volume deleted, and
    the run restarts once with `retry(plan, fallback)` (TCG). The verdict is recorded in the accelerator cache
    (*cache*: a directory, None for the workbench's cache), so the next run on this host goes straight to TCG.
    *applies* says which plans are probed."""

    window: float = KVM_PROBE_WINDOW
    detector: Callable[[str], bool] = kernel_output_seen
    retry: Callable[[BuildPlan, AccelFallback], BuildPlan] = under_tcg
    applies: Callable[[BuildPlan], bool] = auto_kvm
    cache: Path | None = None


class Build:
    """One build of one plan. `run()` returns the artifact directory or raises BuildFailed/WorkbenchError.

    *kvm_probe* (default: `KvmProbe()`; None: never probe) restarts a silent `--accel auto` KVM build under TCG."""

    def __init__(self, plan: BuildPlan, monitor: Monitor | None = None, *, work_dir: Path | None = None,
                 served_repo: str | None = None, kvm_probe: KvmProbe | None = KvmProbe()) -> None:  # noqa: B008
        self.plan = plan
        self.monitor = monitor or Monitor()
        self.work_dir = work_dir
        self.served_repo = served_repo  # host:port where a local tree is served to the guest
        self.kvm_probe = kvm_probe
        self._probe: KvmProbe | None = None  # the probe of the current attempt
        self._lock = threading.Lock()
        self.timings: dict[str, float] = {}
        self._verdict_key = ""
        self._served_here = False  # the build serves a local tree itself (again after a restart)
        self.session: Session | None = None
        self._server: Any = None
        self.restarts: list[str] = []  # why an attempt was thrown away and the build run again (the manifest says)
        self._reset()

    def _reset(self) -> None:
        """The state of one attempt (a restart under TCG begins again from nothing)."""
        self.detector = FailureDetector()
        self.console: list[str] = []
        self.installer_log: list[str] = []
        self.last_output = time.monotonic()
        self.stopped = threading.Event()
        self.stop_reason = ""
        self.conn_lost = threading.Event()
        self.paused_on_io_error = threading.Event()  # qemu paused the guest: a disk write failed (a full pool)
        self.conn: libvirt.virConnect | None = None
        self.dom: libvirt.virDomain | None = None
        self._dom_uuid = ""  # to find the guest's qemu on this host should libvirtd die
        self.readers: list[_Reader] = []
        self._callback_ids: list[int] = []

    # -- callbacks from threads ------------------------------------------------------------------------------
    def received(self, channel: str, text: str) -> None:
        with self._lock:
            self.last_output = time.monotonic()
            (self.console if channel == "console" else self.installer_log).append(text)
            self.detector.feed(channel, text)
        self.monitor.output(channel, text)

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self.stop_reason = stop_reason(detail)
            self.stopped.set()
        elif event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
            self.stop_reason = "crashed"
        elif event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR:
            self.paused_on_io_error.set()

    def _closed(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self.conn_lost.set()

    # -- the build -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        started = time.monotonic()
        self._reap_dead_owners()
        with build_lock(self.plan.build_id):
            probe = self.kvm_probe if self.kvm_probe is not None and self.kvm_probe.applies(self.plan) else None
            result = self._attempt(probe)
            if result.status == "kvm-silent":
                result = self._restart_under_tcg(result, probe)
            for _ in range(HOST_FAULT_RESTARTS):
                if result.status != "host-fault":
                    break
                result = self._restart_after_host_fault(result)
            self.timings["total"] = round(time.monotonic() - started, 3)
            if result.status != "success":
                result.timings = self.timings
                result.logs_dir = self._save_failed_logs()
                if result.logs_dir:
                    result.hint = (result.hint + "; " if result.hint else "") + f"logs: {result.logs_dir}"
                self.monitor.note("error", f"{result.title}: {result.message}")
                raise BuildFailed(result)
            assert result.artifact_dir
            return Path(result.artifact_dir)

    def _reap_dead_owners(self) -> None:
        """What a killed build left in the pool goes before this one starts (said in one line each)."""
        reap_dead_runs(self.plan.options.uri, self.plan.options.pool, lambda m: self.monitor.note("warning", m))

    def _attempt(self, probe: KvmProbe | None) -> BuildResult:
        """One attempt in its own temporary directory; the domain and every volume are gone when it returns."""
        self._probe = probe
        with tempfile.TemporaryDirectory(prefix="ccis-build-", dir=self.work_dir) as tmpd:
            try:
                return self._run(Path(tmpd))
            finally:
                t = time.monotonic()
                self._cleanup()
                self.timings["cleanup"] = round(time.monotonic() - t, 3)

    def _restart_after_host_fault(self, fault: BuildResult) -> BuildResult:
        """qemu died, or the TCG installer kernel stopped mid-boot: not the kickstart's doing; say so and build
        again once from nothing (same accelerator). The manifest's `restarts` keeps what happened."""
        said = f"{fault.title}: {fault.message}"
        self.monitor.note("warning", f"{said}; this is the emulator's fault, not the kickstart's: destroyed it and "
                          "building again")
        self.restarts.append(said)
        result = self._attempt_again("failed-attempt", f"{said}; this log is the second attempt's")
        if result.status == "host-fault":  # the second fault is reported as what it is
            result.status = "crashed" if result.kind == "emulator-died" else "stalled"
            result.message += " (for the second time: the first attempt ended the same way)"
        return result

    def _restart_under_tcg(self, silent: BuildResult, probe: KvmProbe | None) -> BuildResult:
        """The KVM guest stayed silent (or could not start): say so, remember it, build again under TCG."""
        assert probe is not None
        fallback = AccelFallback(silent.message)
        self.monitor.note("warning", f"{silent.title}: {silent.message}; destroyed it and restarting the build "
                          "under TCG (slower, but it runs)")
        key = self._verdict_key
        if key:
            verdict = record_verdict(key, False, silent.message, probe.cache)
            if verdict is not None:
                self.monitor.note("info", f"remembered for this host: later builds use TCG at once "
                                  f"(delete {verdict.path} to probe KVM again)")
        self.plan = probe.retry(self.plan, fallback)
        return self._attempt_again("kvm-probe", f"{fallback.message()}; this log is the TCG attempt's")

    def _attempt_again(self, spent_as: str, why: str) -> BuildResult:
        """A new attempt from nothing after an aborted one: its install time is kept under *spent_as*, the tree
        is served again if this build served it, and the new console log opens with *why*."""
        self.timings = {spent_as: self.timings.get("install", 0.0)}
        if self._served_here:  # the tree server of the aborted attempt is gone: serve the tree again
            self.served_repo = None
        self._reset()
        self.console.append(f"[ccis-workbench] {why}\n")
        return self._attempt(None)

    def _frozen(self, exc: EmulatorFrozen) -> BuildResult:
        """qemu stopped answering libvirt as the guest started (start_within, resume_within destroyed it). Under
        `--accel auto` a KVM guest that froze goes on under TCG, as a silent one does."""
        if self._probe is not None:
            return BuildResult("kvm-silent", "The KVM guest froze", str(exc), kind="kvm-silent")
        return BuildResult("host-fault", "The emulator froze", str(exc), FAULT_HINT, "emulator-frozen", self._tail())

    def _stage(self, name: str, detail: str = "") -> float:
        self.monitor.stage(name, detail)
        return time.monotonic()

    def _done(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 3)

    def _run(self, tmp: Path) -> BuildResult:
        plan = self.plan
        self._verdict_key = ""
        t0 = self._stage("prepare", "kickstart into a copy of the initrd")
        initrd = tmp / "initrd.img"
        inject_kickstart(plan.source.initrd, plan.kickstart, initrd)
        self._done("prepare", t0)

        t0 = self._stage("connect", plan.options.uri)
        self.session = Session(plan.options.uri, plan.options.pool, plan.options.pool_path, self.monitor).open()
        self.conn = self.session.conn
        assert self.conn is not None
        self.conn.registerCloseCallback(self._closed, None)
        self.session.pool  # noqa: B018  (created and started when missing)
        self._done("connect", t0)
        if self._probe is not None:
            self._verdict_key = hypervisor_key(self.conn)
            known = read_verdict(self._verdict_key, self._probe.cache) if self._verdict_key else None
            if known is not None and not known.kvm_works:
                fallback = AccelFallback(known.reason, source="cached")
                self.monitor.note("warning", f"using TCG, not KVM: {known.describe()}")
                self.console.append(f"[ccis-workbench] {fallback.message()}\n")
                plan = self.plan = self._probe.retry(plan, fallback)
                self._probe = None
        elif plan.accel_fallback is not None and plan.accel_fallback.source == "cached" and not self.console:
            # the plan already chose TCG from the recorded verdict: say so, with where it is recorded
            key = hypervisor_key(self.conn)
            known = read_verdict(key, self.kvm_probe.cache if self.kvm_probe else None) if key else None
            why = known.describe() if known is not None else plan.accel_fallback.reason
            self.monitor.note("warning", f"using TCG, not KVM: {why}")
            self.console.append(f"[ccis-workbench] {plan.accel_fallback.message()}\n")

        t0 = self._stage("upload", "kernel, initrd and disks into volumes")
        paths: dict[str, str] = {}
        for spec in plan.volumes:
            if self.monitor.cancelled():
                return self._cancelled()
            local = {"kernel": plan.source.kernel, "initrd": initrd, "iso": plan.source.iso}.get(spec.role)
            capacity = Path(local).stat().st_size if local else spec.capacity
            try:
                vol = self.session.create_volume(spec.name, spec.format, capacity, what="a volume")
                if local:
                    self.session.upload(vol, Path(local))
            except (libvirt.libvirtError, WorkbenchError) as exc:
                return self._upload_failed(spec.name, exc)
            paths[spec.role] = vol.path()
        self._done("upload", t0)

        xml = plan.domain_xml(paths, {"host": socket.gethostname(), "pid": str(os.getpid())})
        if plan.source.kind == "dir" and self.served_repo is None:
            # a local tree reaches the guest over HTTP: user-mode networking sees the host's loopback at 10.0.2.2
            from ccis_workbench.rehearsal.httpserver import TreeServer

            self._server = TreeServer(plan.source.location).start()
            self.served_repo = f"{USER_NET_HOST}:{self._server.port}"
            self._served_here = True
        if self.served_repo:
            xml = xml.replace("{served}", self.served_repo)
        t0 = self._stage("install", f"domain {plan.name} ({plan.domain_type})")
        try:
            flags = libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY
            self.dom = start_within(self.conn, xml, flags, plan.name)
            self._dom_uuid = self.dom.UUIDString()
        except EmulatorFrozen as exc:
            self._done("install", t0)
            return self._frozen(exc)
        except libvirt.libvirtError as exc:
            if died_while_starting(exc):
                self._done("install", t0)
                return BuildResult("host-fault", "The emulator died", death_while_starting(exc), FAULT_HINT,
                                   "emulator-died", self._tail())
            if self._probe is not None:
                return BuildResult("kvm-silent", "The KVM guest could not start", f"libvirt refused it: {exc}",
                                   kind="kvm-silent")
            hint = ("KVM is not usable here: use --accel tcg" if plan.domain_type == "kvm" else
                    "see `ccis-workbench doctor`")
            return BuildResult("failed", "The install domain could not start", str(exc), hint, "start")
        self._callback_ids.append(self.conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None))
        self._attach()
        self.last_output = time.monotonic()
        try:
            resume_within(self.dom)
        except EmulatorFrozen as exc:
            self._done("install", t0)
            return self._frozen(exc)
        result = self._watch(t0)
        self._done("install", t0)
        if result.status != "success":
            return result

        t0 = self._stage("download", "installed disk from its volume")
        self._stop_domain()
        disk = tmp / "disk.qcow2"
        self.session.download(plan.volume("disk").name, disk)  # type: ignore[union-attr]
        export = None
        if plan.volume("export"):
            export = tmp / "export.raw"
            self.session.download(plan.volume("export").name, export)  # type: ignore[union-attr]
        self._done("download", t0)
        if self.monitor.cancelled():
            return self._cancelled()
        t0 = self._stage("artifacts", plan.artifact_dir)
        out = Producer(plan, self.monitor).produce(
            disk, export=export, console_log="".join(self.console), installer_log="".join(self.installer_log),
            packages=self.detector.packages, timings=self.timings,
            extra_manifest={"ending": result.kind, "libvirt_version": self._libvirt_version(),
                            **({"restarts": list(self.restarts)} if self.restarts else {})})
        self._done("artifacts", t0)
        result.artifact_dir = str(out)
        self.monitor.note("info", f"artifacts in {out}")
        return result

    def _libvirt_version(self) -> str:
        try:
            v = self.conn.getLibVersion() if self.conn else 0
        except libvirt.libvirtError:
            return "unknown"
        return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"

    def _attach(self) -> None:
        assert self.conn is not None and self.dom is not None
        for channel, opener in (("console", lambda s: self.dom.openConsole(None, s, libvirt.VIR_DOMAIN_CONSOLE_FORCE)),
                                ("installer-log", lambda s: self.dom.openChannel(LOG_CHANNEL, s,
                                                                                 libvirt.VIR_DOMAIN_CHANNEL_FORCE))):
            stream = self.conn.newStream(0)
            try:
                opener(stream)
            except libvirt.libvirtError as exc:
                self.monitor.note("warning", f"cannot attach the {channel}: {exc}")
                continue
            reader = _Reader(self, channel, stream)
            reader.start()
            self.readers.append(reader)

    def _watch(self, t0: float) -> BuildResult:
        """Wait for an ending; each branch explains itself."""
        o = self.plan.options
        failure_at: float | None = None
        probe, kernel_seen = self._probe, False
        while True:
            self.stopped.wait(0.2)
            now = time.monotonic()
            if self.monitor.cancelled():
                return self._cancelled()
            with self._lock:
                verdict = self.detector.verdict()
                idle = now - self.last_output
            if verdict is not None and verdict.failed:
                failure_at = failure_at or now
                if now - failure_at >= FAILURE_GRACE or self.stopped.is_set():
                    with self._lock:
                        verdict = self.detector.verdict()
                    return self._failure(verdict)  # type: ignore[arg-type]
                continue
            if probe is not None and not kernel_seen:
                with self._lock:
                    text = "".join(self.console)
                if probe.detector(text):
                    kernel_seen = True
                    self.monitor.note("info", f"the kernel runs under KVM ({now - t0:.1f} s after the start)")
                elif now - t0 >= probe.window and not self.stopped.is_set():
                    return BuildResult("kvm-silent", "The KVM guest stayed silent",
                                       f"no output from the running kernel on the serial console within "
                                       f"{probe.window:.0f} s under KVM (KVM guests hang on some hosts right "
                                       f"after the kernel's real-mode setup)", kind="kvm-silent")
            if verdict is not None and verdict.kind == "waiting":
                self.monitor.note("info", "the installer finished and waits for a key (the kickstart has no "
                                  "poweroff): the workbench powers the guest off")
                return BuildResult("success", "Installed", verdict.summary, kind="waiting")
            if self.stopped.is_set() or not self._alive():
                # give the readers a moment to deliver the last bytes before judging (the console of a stopped
                # domain does not always end its stream promptly, so the wait is bounded)
                deadline = time.monotonic() + 0.5
                for r in self.readers:
                    r.join(timeout=max(0.0, deadline - time.monotonic()))
                self.stopped.wait(1.0)  # libvirt's STOPPED event says how it ended (it may trail isActive())
                with self._lock:
                    verdict = self.detector.verdict()
                if verdict is not None and verdict.failed:
                    return self._failure(verdict)
                if verdict is not None and verdict.kind == "success":
                    self.monitor.note("info", "the installer completed and the guest powered off")
                    return BuildResult("success", "Installed", verdict.summary, kind="success")
                reason = self.stop_reason or "stopped"
                tail = self._tail()
                if reason == EMULATOR_DIED:
                    return BuildResult("host-fault", "The emulator died",
                                       emulator_death(self.plan.options.uri, self.plan.name), FAULT_HINT,
                                       "emulator-died", tail)
                return BuildResult("crashed", "The guest stopped before the install completed",
                                   f"the domain ended ({reason}) without the installer reporting completion",
                                   "look at the last console lines below", "guest-stopped", tail)
            if self.paused_on_io_error.is_set():
                return self._io_error_result()
            if self.conn_lost.is_set():
                outcome = self._reconnect()
                if outcome is not None:
                    return outcome
                continue
            if idle >= o.inactivity_timeout:
                with self._lock:
                    before_installer = not self.installer_log
                if self.plan.domain_type == "qemu" and before_installer:
                    return BuildResult("host-fault", "The installer's kernel stopped under TCG",
                                       f"no console output for {idle:.0f}s before the installer started (the "
                                       f"kernel of the install tree stopped in its own boot under TCG; the "
                                       f"kickstart had not been read yet)",
                                       "raise --inactivity-timeout if this host is very slow", "stalled",
                                       self._tail())
                other = "tcg" if self.plan.domain_type == "kvm" else "kvm"
                why = ("KVM guests hang right after the kernel starts on some hosts"
                       if other == "tcg" else "TCG is much slower than KVM")
                return BuildResult("stalled", "The guest stopped producing output",
                                   f"no console or installer-log output for {idle:.0f}s "
                                   f"(accelerator {self.plan.domain_type})",
                                   f"{why}: try --accel {other}, or raise --inactivity-timeout", "stalled",
                                   self._tail())
            if now - t0 >= o.total_timeout:
                return BuildResult("timeout", "The install took too long",
                                   f"still running after {o.total_timeout:.0f}s (--total-timeout)",
                                   "raise --total-timeout, or look at the console for where it was", "timeout",
                                   self._tail())

    def _alive(self) -> bool:
        if self.dom is None:
            return False
        try:
            return bool(self.dom.isActive())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            self.conn_lost.set()
            return True

    def _reconnect(self) -> BuildResult | None:
        """libvirtd went away: wait for it, then find the domain again (or report it lost)."""
        self.monitor.note("warning", "lost the connection to libvirtd; waiting for it to come back")
        assert self.session is not None
        if not self.session.reconnect(RECONNECT_WINDOW, self.monitor.cancelled):
            return BuildResult("lost", "libvirtd went away", f"no connection to {self.plan.options.uri} for "
                               f"{RECONNECT_WINDOW:.0f}s{self._kill_orphaned_guest()}",
                               "start libvirtd again, then `ccis-workbench gc` (it removes the volumes)", "lost")
        conn = self.session.conn
        assert conn is not None
        for r in self.readers:
            r.stop.set()
        self.readers = []
        self.conn = conn
        self.conn_lost.clear()
        conn.registerCloseCallback(self._closed, None)
        try:
            self.dom = conn.lookupByName(self.plan.name)
        except libvirt.libvirtError:
            self.dom = None
            return BuildResult("lost", "libvirtd restarted during the build",
                               "the install domain did not survive the restart of libvirtd",
                               "build again when libvirtd is stable", "libvirtd-restart", self._tail())
        self.monitor.note("warning", "libvirtd restarted; the install domain survived, reattached the console")
        self._callback_ids = [conn.domainEventRegisterAny(self.dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                          self._lifecycle, None)]
        self._attach()
        return None

    def _kill_orphaned_guest(self) -> str:
        """libvirtd is gone for good: on this host, the guest's qemu (found by the domain's UUID on its command
        line) would go on installing with nobody watching; kill it. What was done, as the end of a sentence."""
        if not self._dom_uuid or not is_local_uri(self.plan.options.uri):
            return ""
        killed, failed = [], []
        for pid in guest_qemu_pids(self._dom_uuid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(str(pid))
            except ProcessLookupError:
                continue
            except PermissionError:
                failed.append(str(pid))
        said = f"; killed the guest's qemu that libvirtd left running (pid {', '.join(killed)})" if killed else ""
        if failed:
            said += f"; could not kill the guest's qemu (pid {', '.join(failed)}): not allowed"
        return said

    def _tail(self, n: int = 15) -> list[str]:
        with self._lock:
            text = "".join(self.console)
        from ccis_workbench.core.failure import clean

        return [clean(x) for x in text.splitlines() if clean(x)][-n:]

    def _failure(self, verdict: Verdict) -> BuildResult:
        titles = {"post-failed": "A %post script failed", "kickstart-error": "The installer refused the kickstart",
                  "traceback": "The installer crashed", "package-error": "Package installation failed",
                  "disk-full": "The guest's disk is too small", "oom": "The guest ran out of memory",
                  "dracut-emergency": "The installer could not start", "kernel-panic": "The guest kernel panicked"}
        hints = {"disk-full": "raise disk_size (--disk-size)",
                 "oom": f"give the guest more memory: raise --memory (it had {self.plan.options.memory_mb} MiB)",
                 "dracut-emergency": "check inst.repo/inst.stage2 and the tree (ccis-workbench plan)",
                 "post-failed": "the script's output is in installer.log",
                 "kickstart-error": "run `ccis-workbench lint` on the profile"}
        summary = verdict.summary
        # the kickstart line the installer names, as the layer file:line it came from
        origins = getattr(self.plan, "kickstart_origins", {})
        for text in verdict.lines:
            m = re.search(r"(?:script failed \(kickstart line|script at line|on line) (\d+)", text)
            if m and int(m[1]) in origins:
                summary += f" (kickstart line {m[1]}, layer {origins[int(m[1])]})"
                break
        return BuildResult("failed", titles.get(verdict.kind, "The install failed"), summary,
                           hints.get(verdict.kind, ""), verdict.kind, verdict.lines)

    def _pool_full_result(self, what: str, cause: str) -> BuildResult:
        o = self.plan.options
        return BuildResult("failed", "The storage pool is full",
                           f"no space left in pool {o.pool} ({self._pool_path()}) for {what}: {cause}",
                           f"free space there, or build into another pool (--pool); `ccis-workbench doctor --pool "
                           f"{o.pool}` shows its free space", "pool-full")

    def _io_error_result(self) -> BuildResult:
        """qemu paused the guest because a write to its disk failed: no space left in the pool is said as such."""
        try:
            errors = self.dom.diskErrors(0) if self.dom is not None else {}
        except libvirt.libvirtError:
            errors = {}
        if libvirt.VIR_DOMAIN_DISK_ERROR_NO_SPACE in errors.values():
            return self._pool_full_result(self.plan.volume("disk").name,  # type: ignore[union-attr]
                                          "the guest's disk grew while it installed and its writes failed "
                                          "(No space left on device); qemu paused the guest")
        return BuildResult("failed", "The guest's disk failed",
                           f"a write to the guest's disk failed and qemu paused the guest "
                           f"(disk errors: {errors or 'not reported'})",
                           f"check the pool {self.plan.options.pool} (`ccis-workbench doctor`)", "io-error",
                           self._tail())

    def _upload_failed(self, name: str, exc: Exception) -> BuildResult:
        """A volume that could not be made or filled: a full pool is said as such, anything else plainly."""
        cause = exc.message if isinstance(exc, WorkbenchError) else str(exc)
        if "No space left on device" in cause or "not enough space" in cause.lower():
            return self._pool_full_result(name, cause)
        return BuildResult("failed", "Cannot upload into the storage pool", f"{name}: {cause}",
                           "ccis-workbench doctor checks the pool", "upload")

    def _pool_path(self) -> str:
        """Where the pool keeps its volumes (its target path), or the pool's name when libvirt does not say."""
        try:
            assert self.session is not None
            m = re.search(r"<target>\s*<path>([^<]*)</path>", self.session.pool.XMLDesc(0))
            return m.group(1) if m else self.plan.options.pool
        except (libvirt.libvirtError, AssertionError):
            return self.plan.options.pool

    def _cancelled(self) -> BuildResult:
        return BuildResult("cancelled", "Build cancelled", "the domain was destroyed and its volumes removed",
                           kind="cancelled")

    def _stop_domain(self) -> None:
        if self.dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if self.dom.isActive():
                    self.dom.destroy()
        for r in self.readers:
            r.stop.set()

    def _cleanup(self) -> None:
        """Destroy the domain, delete every volume of the plan. Never raises."""
        self._stop_domain()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.session is None:
            return
        if self.conn is not None:
            for cid in self._callback_ids:
                with contextlib.suppress(libvirt.libvirtError):
                    self.conn.domainEventDeregisterAny(cid)
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.unregisterCloseCallback()
        # every volume of the plan, also one whose creation libvirt finished after an error
        self.session.volume_names += [v.name for v in self.plan.volumes if v.name not in self.session.volume_names]
        self.session.delete_volumes()
        self.session.close()
        self.session = None
        self.conn = None

    def _save_failed_logs(self) -> str | None:
        """Failed builds keep their logs in the cache (never in the artifact directory)."""
        d = cache_root() / "logs" / self.plan.build_id
        try:
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)  # private: the kickstart (and the installer's echo of it) is not for other local users
            (d / "console.log").write_text("".join(self.console))
            (d / "installer.log").write_text("".join(self.installer_log))
            fd = os.open(d / "kickstart.ks", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.plan.kickstart)
        except OSError:
            return None
        return str(d)


# -- gc ------------------------------------------------------------------------------------------------------

@dataclass
class Leftover:
    kind: str  # domain | volume | keydir (a boot test's credentials directory)
    name: str
    build_id: str | None
    live: bool
    removed: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "build_id": self.build_id, "live": self.live,
                "removed": self.removed, "error": self.error}


def find_leftovers(conn: libvirt.virConnect, pool_name: str = DEFAULT_POOL) -> list[Leftover]:
    """Domains and volumes with the ccis- prefix (domains also carry our metadata namespace)."""
    out: list[Leftover] = []
    for dom in conn.listAllDomains(0):
        name = dom.name()
        if not name.startswith(PREFIX):
            continue
        m = _BUILD_ID.search(name)
        bid = m.group(1) if m else None
        out.append(Leftover("domain", name, bid, bool(bid and build_is_live(bid))))
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        names = pool.listVolumes() if pool.isActive() else []
    except libvirt.libvirtError:
        names = []
    for name in names:
        if not name.startswith(PREFIX):
            continue
        m = _BUILD_ID.search(name)
        bid = m.group(1) if m else None
        out.append(Leftover("volume", name, bid, bool(bid and build_is_live(bid))))
    return out


def reap_dead_owners(conn: libvirt.virConnect, pool_name: str = DEFAULT_POOL,
                     say: Callable[[str], None] = lambda _m: None) -> list[Leftover]:
    """Remove the domains and volumes of runs whose owner died on this host (`dead_owners`), their stale lock
    files and the half-written downloads no live run holds; *say* gets one line per dead run. A live run's things,
    and those of runs this host cannot vouch for (no lock file here), are left alone."""
    removed: list[Leftover] = []
    for path in sweep_partial_downloads():
        say(f"removed a half-written download of a dead run: {path}")
    dead = dead_owners()
    if not dead:
        return removed
    items = [i for i in find_leftovers(conn, pool_name) if i.build_id in dead and not i.live]
    for it in items:
        _remove_leftover(conn, pool_name, it)
        removed.append(it)
    for bid, pid in sorted(dead.items()):
        mine = [i for i in items if i.build_id == bid]
        if all(i.removed for i in mine):
            forget_dead_owner(bid)
        if not mine:
            continue
        doms = ", ".join(i.name for i in mine if i.kind == "domain") or "no domain"
        vols = ", ".join(i.name for i in mine if i.kind == "volume") or "no volumes"
        failed = [f"{i.name}: {i.error}" for i in mine if not i.removed]
        what = "boot test" if all(i.name.startswith(BOOT_TEST_PREFIX) for i in mine) else "build"
        say(f"removed the leftovers of a dead {what} (pid {pid}): {doms}, {vols}"
            + (f" (could not remove {'; '.join(failed)})" if failed else ""))
    return removed


def guest_qemu_pids(uuid: str, proc: Path = Path("/proc")) -> list[int]:
    """The local qemu processes started for the domain with *uuid* (`-uuid UUID` on their command line)."""
    found = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or b"qemu" not in os.path.basename(args[0]):
            continue
        if any(a == b"-uuid" and b.decode("ascii", "replace") == uuid for a, b in itertools.pairwise(args)):
            found.append(int(d.name))
    return found


def reap_dead_runs(uri: str, pool_name: str = DEFAULT_POOL,
                   say: Callable[[str], None] = lambda _m: None) -> list[Leftover]:
    """`reap_dead_owners` on a connection of its own to *uri*, plus the credentials directories of boot tests
    killed on this host. What build, boot-test, doctor and the TUI's host check run first. libvirt not reachable:
    nothing is done (the caller's own step says why)."""
    for path in _remove_dead_credentials():
        say(f"removed the credentials of a dead boot test: {path}")
    try:
        conn = connect(uri)
    except WorkbenchError:
        return []
    try:
        return reap_dead_owners(conn, pool_name, say)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _remove_dead_credentials() -> list[Path]:
    """The boot-test credentials directories whose owner (pid and start time in its owner file) is gone and that no
    --keep-on-failure guest uses; one without an owner file yet (being made just now) is left alone."""
    removed = []
    for c in credential_dirs():
        if c.live or c.kept_for or not (c.path / OWNER_FILE).is_file():
            continue
        shutil.rmtree(c.path, ignore_errors=True)
        if not c.path.exists():
            removed.append(c.path)
    return removed


def _remove_leftover(conn: libvirt.virConnect, pool_name: str, it: Leftover) -> None:
    """Destroy and undefine a leftover domain, or delete a leftover volume; *it* records the outcome (one that
    is already gone counts as removed)."""
    try:
        if it.kind == "domain":
            dom = conn.lookupByName(it.name)
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        else:
            conn.storagePoolLookupByName(pool_name).storageVolLookupByName(it.name).delete(0)
        it.removed = True
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL):
            it.removed = True
        else:
            it.error = str(exc)


def gc(uri: str, pool_name: str = DEFAULT_POOL, dry_run: bool = False, force: bool = False) -> list[Leftover]:
    """Destroy leftover ccis- domains and delete leftover ccis- volumes (live builds are skipped unless force)."""
    conn = connect(uri)
    try:
        items = find_leftovers(conn, pool_name)
        for it in items:
            if dry_run or (it.live and not force):
                continue
            _remove_leftover(conn, pool_name, it)
        if not dry_run:  # the stale locks of dead runs whose things are all gone now
            for bid in dead_owners():
                if all(i.removed for i in items if i.build_id == bid):
                    forget_dead_owner(bid)
        # boot-test credentials (private key, kept password) that a killed run could not remove
        for c in remove_stale_credentials(dry_run=dry_run):
            items.append(Leftover("keydir", str(c.path), None, c.live, c.removed, c.error))
        return items
    finally:
        conn.close()


# -- doctor --------------------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool
    message: str
    fix: str = ""
    severity: str = "error"  # when not ok: error | warning

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "message": self.message, "fix": self.fix,
                "severity": self.severity}


def kvm_available(conn: libvirt.virConnect | None = None) -> bool:
    """Whether the host offers KVM (its guests may still hang: auto then probes them, see `KvmProbe`)."""
    if conn is not None:
        try:
            conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
            return True
        except libvirt.libvirtError:
            return False
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


#: How long the doctor's probe guest may take to print "Linux version": a Debian bzImage decompresses itself
#: in about 7 s under TCG on this kind of host; KVM takes well under a second.
DOCTOR_PROBE_WINDOW = 25.0


@dataclass
class ProbeResult:
    """Whether a guest under one accelerator ran its kernel: `ran`, after `seconds`, or why not."""

    accel: str  # kvm | tcg
    ran: bool
    seconds: float
    message: str
    console: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"accel": self.accel, "ran": self.ran, "seconds": round(self.seconds, 3), "message": self.message}


def probe_accelerator(uri: str, accel: str, kernel: Path, *, window: float = DOCTOR_PROBE_WINDOW,
                      detector: Callable[[str], bool] = kernel_output_seen, pool: str = DEFAULT_POOL,
                      monitor: Monitor | None = None) -> ProbeResult:
    """Boot *kernel* (no disk, no network, `console=ttyS0 panic=-1`) under *accel* and watch the serial console
    for the running kernel for up to *window* seconds. The domain and the kernel's volume are removed before it
    returns, whatever happens."""
    mon = monitor or Monitor()
    run_id = new_build_id()
    name = f"{PREFIX}probe-{accel}-{run_id}"
    dtype = "kvm" if accel == "kvm" else "qemu"
    t0 = time.monotonic()
    with build_lock(run_id), Session(uri, pool, monitor=mon) as session:
        vol = session.create_volume(f"{name}-vmlinuz", "raw", kernel.stat().st_size, what="the probe's kernel")
        session.upload(vol, kernel)
        conn = session.conn
        assert conn is not None
        dom = None
        try:
            try:
                dom = start_within(conn, probe_domain_xml(name, dtype, vol.path()),
                                   libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY, name)
            except EmulatorFrozen as exc:
                return ProbeResult(accel, False, 0.0, str(exc))
            except libvirt.libvirtError as exc:
                return ProbeResult(accel, False, 0.0, f"libvirt cannot start a {accel} guest: {exc}")
            stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            text = ""
            start = time.monotonic()
            try:
                resume_within(dom)
            except EmulatorFrozen as exc:
                return ProbeResult(accel, False, 0.0, str(exc))
            while True:
                try:
                    data = stream.recv(4096)
                except libvirt.libvirtError:
                    data = b""
                if isinstance(data, bytes) and data:
                    text += data.decode("utf-8", "replace")
                    if detector(text):
                        took = time.monotonic() - start
                        return ProbeResult(accel, True, took, f"the kernel ran after {took:.1f} s", text)
                    continue
                elapsed = time.monotonic() - start
                if elapsed >= window:
                    last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:] or ["nothing"]
                    return ProbeResult(accel, False, elapsed, f"no kernel output within {window:.0f} s (the "
                                       f"console showed: {last[0][:80]})", text)
                if data == b"" or not dom.isActive():
                    return ProbeResult(accel, False, elapsed, "the guest ended without kernel output", text)
                time.sleep(0.1)  # polling a non-blocking console stream
        finally:
            if dom is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
            mon.note("info", f"probe {accel}: {time.monotonic() - t0:.1f} s")


def accelerator_checks(uri: str, accels: tuple[str, ...] = ("kvm", "tcg"), kernel: Path | None = None, *,
                       window: float = DOCTOR_PROBE_WINDOW, pool: str = DEFAULT_POOL,
                       cache: Path | None = None, reprobe: bool = False) -> list[Check]:
    """Real probes (a tiny guest each) under *accels*; what `--accel auto` will do follows from them, and the
    KVM verdict is recorded for this host (the build and the boot test read it). A verdict already recorded for
    this host, URI and qemu version (by a build's probe or an earlier doctor) is reported instead of probing KVM
    again, unless *reprobe*."""
    if kernel is None:
        try:
            from ccis_workbench.rehearsal.tree import find_host_parts

            kernel = find_host_parts().vmlinuz
        except WorkbenchError as exc:
            return [Check("accelerator", False, f"no kernel to probe with: {exc.message}", exc.hint, "warning")]
    checks: list[Check] = []
    for accel in accels:
        if accel == "kvm" and not kvm_device_usable():
            checks.append(Check("kvm", True, "no usable /dev/kvm: builds use TCG (slower)", severity="warning"))
            continue
        key = ""
        if accel == "kvm":
            conn = connect(uri)
            try:
                key = hypervisor_key(conn)
            finally:
                conn.close()
            known = read_verdict(key, cache) if key and not reprobe else None
            if known is not None:
                checks.append(Check("kvm", known.kvm_works, f"KVM guests run: {known.describe()}" if known.kvm_works
                                    else f"KVM present but guests do not run: {known.describe()}",
                                    "" if known.kvm_works else "builds and boot tests under --accel auto use TCG on "
                                    "this host; --accel kvm would hang", "warning"))
                continue
        try:
            res = probe_accelerator(uri, accel, kernel, window=window, pool=pool)
        except WorkbenchError as exc:
            checks.append(Check(accel, False, f"probe failed: {exc.message}", exc.hint))
            continue
        if accel == "kvm":
            record_verdict(key, res.ran, res.message, cache)
            if res.ran:
                checks.append(Check("kvm", True, f"KVM guests run ({res.message})"))
            else:
                checks.append(Check("kvm", False, f"KVM present but guests do not run: {res.message}",
                                    "builds and boot tests under --accel auto use TCG on this host (recorded); "
                                    "--accel kvm would hang", "warning"))
        else:
            checks.append(Check(accel, res.ran, f"TCG guests run ({res.message})" if res.ran else
                                f"TCG guests do not run: {res.message}", "" if res.ran else
                                "check qemu-system-x86 (apt-get install qemu-system-x86)"))
    return checks


def kvm_device_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def doctor(uri: str, pool_name: str = DEFAULT_POOL, output_dir: str = ".",
           accels: tuple[str, ...] = ("kvm", "tcg"), probe_window: float = DOCTOR_PROBE_WINDOW,
           cache: Path | None = None, reprobe: bool = False) -> list[Check]:
    """Check the host for builds, with a fix for each problem. *accels*: the accelerators probed with a real
    guest (empty: none)."""
    checks: list[Check] = []
    try:
        conn = connect(uri)
    except WorkbenchError as exc:
        checks.append(Check("libvirt", False, exc.message, exc.hint))
        conn = None
    if conn is not None:
        v = conn.getLibVersion()
        checks.append(Check("libvirt", True, f"{uri} reachable (libvirt {v // 1000000}.{v // 1000 % 1000}.{v % 1000})"))
        try:
            conn.listAllStoragePools(0)
            checks.append(Check("permission", True, "allowed to manage storage and domains"))
        except libvirt.libvirtError as exc:
            checks.append(Check("permission", False, str(exc), "use qemu:///session or join the libvirt group"))
        pool_ok = False
        try:
            pool = ensure_pool(conn, pool_name)
            info = pool.info()
            free = info[3]
            pool_ok = True
            checks.append(Check("pool", True, f"pool {pool_name} active at {default_pool_path(uri)}, "
                                f"{free / (1 << 30):.1f} GiB free"))
            if free < 2 << 30:
                checks.append(Check("pool-space", False, f"only {free / (1 << 30):.1f} GiB free in the pool",
                                    "free space there (a build needs its disk size)", "warning"))
        except WorkbenchError as exc:
            checks.append(Check("pool", False, exc.message, exc.hint))
        conn.close()
        if pool_ok and accels:
            checks += accelerator_checks(uri, accels, window=probe_window, pool=pool_name, cache=cache,
                                         reprobe=reprobe)
    try:
        st = shutil.disk_usage(output_dir)
        ok = st.free >= 2 << 30
        checks.append(Check("output-space", ok, f"{st.free / (1 << 30):.1f} GiB free in {os.path.abspath(output_dir)}",
                            "" if ok else "free space or choose another --output", "warning"))
    except OSError as exc:
        checks.append(Check("output-space", False, str(exc), "choose another --output"))
    for tool, pkg in (("qemu-img", "qemu-utils"), ("tar", "tar")):
        path = shutil.which(tool)
        checks.append(Check(tool, bool(path), path or f"{tool} not found", "" if path else f"apt-get install {pkg}"))
    try:
        from ccis_workbench.rehearsal.tree import find_host_parts

        parts = find_host_parts()
        checks.append(Check("rehearsal", True, f"rehearsal tree can be built (kernel {parts.kernel_version})",
                            severity="warning"))
    except WorkbenchError as exc:
        checks.append(Check("rehearsal", False, exc.message, exc.hint, "warning"))
    return checks


def kvm_verdict(uri: str, cache: Path | None = None) -> Any:
    """What is recorded about KVM guests on *uri*'s host (an AccelVerdict), or None: for the plan and the TUI's
    status line (`make_plan(..., kvm_works=verdict.kvm_works)`)."""
    conn = connect(uri)
    try:
        key = hypervisor_key(conn)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
    return read_verdict(key, cache) if key else None
