"""Run a BuildPlan on libvirt: owned pool, uploaded volumes, transient domain, live console, endings, cleanup.

Every file the guest needs travels through storage volumes (upload/download streams), so a remote
`qemu+ssh://` host needs no shared filesystem. The domain is created paused, the console and the installer's
log channel are attached, then it is resumed, so no output is lost. Each ending is explained in one sentence:
success, installer failure (with the offending lines), guest stopped early, no output for N seconds (with
the other accelerator as a hint), total time limit, cancel, libvirtd lost. Whatever happens, the domain is
destroyed and the volumes are deleted before `run` returns; `gc` finds what a killed process left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from ccis_workbench.core.artifacts import Producer
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.failure import FailureDetector, Verdict
from ccis_workbench.core.initrd import inject_kickstart
from ccis_workbench.core.installsource import USER_NET_HOST, cache_root
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import DEFAULT_POOL, LOG_CHANNEL, PREFIX, BuildPlan, default_pool_path

CHUNK = 1 << 18
#: After a failure line, keep reading this long so the whole traceback is captured.
FAILURE_GRACE = 1.5
#: How long to wait for libvirtd to come back after the connection dropped.
RECONNECT_WINDOW = 30.0
_BUILD_ID = re.compile(r"(\d{8}-\d{6}-[0-9a-f]{4})")

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _ignore_libvirt_errors(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error on stderr by default; the workbench reports them itself."""


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread (once per process)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_errors, None)
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class BuildFailed(WorkbenchError):
    """The build ended without artifacts. `result` says how; exit status 1 (the input was fine)."""

    exit_status = 1

    def __init__(self, result: BuildResult) -> None:
        super().__init__(result.title, result.message, hint=result.hint)
        self.result = result


@dataclass
class BuildResult:
    status: str  # success | failed | stalled | timeout | cancelled | crashed | lost
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


def connect(uri: str) -> libvirt.virConnect:
    """Open *uri*, or explain how to make it reachable."""
    ensure_event_loop()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        msg = str(exc)
        hint = ("start the daemons: `virtlogd -d && libvirtd -d` (no systemd), or `systemctl start libvirtd`"
                if "No such file" in msg or "Failed to connect" in msg else
                "check the URI and your permissions (the libvirt group, or use qemu:///session)")
        raise WorkbenchError("libvirt is not reachable", f"{uri}: {msg}", hint=hint) from None


def _lock_path(build_id: str) -> Path:
    return cache_root() / "locks" / f"{build_id}.lock"


@contextlib.contextmanager
def build_lock(build_id: str) -> Iterator[None]:
    """Held while a build runs: `gc` leaves alone what belongs to a live build on this host."""
    path = _lock_path(build_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fh.close()
        path.unlink(missing_ok=True)


def build_is_live(build_id: str) -> bool:
    path = _lock_path(build_id)
    if not path.exists():
        return False
    try:
        with open(path) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def ensure_pool(conn: libvirt.virConnect, name: str = DEFAULT_POOL, path: str | None = None) -> libvirt.virStoragePool:
    """The workbench's own directory pool, defined, built and started when missing."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        target = path or default_pool_path(conn.getURI())
        xml = (f"<pool type='dir'><name>{name}</name><target><path>{target}</path>"
               f"<permissions><mode>0711</mode></permissions></target></pool>")
        try:
            pool = conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
        except libvirt.libvirtError as exc:
            raise WorkbenchError("Cannot create the storage pool", f"{name} at {target}: {exc}",
                                 hint="check permissions, or pass --pool NAME of a usable pool") from None
        with contextlib.suppress(libvirt.libvirtError):
            pool.setAutostart(1)
    if not pool.isActive():
        try:
            pool.create(0)
        except libvirt.libvirtError as exc:
            raise WorkbenchError("Cannot start the storage pool", f"{name}: {exc}",
                                 hint=f"virsh pool-start {name}") from None
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)
    return pool


def _volume_xml(name: str, fmt: str, capacity: int) -> str:
    return (f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
            f"<allocation unit='bytes'>0</allocation><target><format type='{fmt}'/>"
            f"<permissions><mode>0644</mode></permissions></target></volume>")


def upload_file(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: Path, monitor: Monitor) -> None:
    """Stream a local file into a volume (works the same on a remote libvirt host)."""
    size = path.stat().st_size
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    sent = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                if monitor.cancelled():
                    raise WorkbenchError("Cancelled", "upload cancelled")
                view = memoryview(chunk)
                while view:
                    n = stream.send(bytes(view))
                    view = view[n:]
                sent += len(chunk)
                monitor.progress(sent, size, "B")
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def download_volume(conn: libvirt.virConnect, vol: libvirt.virStorageVol, dest: Path, monitor: Monitor) -> None:
    """Stream a volume's content (qcow2 as stored) into a local file (virStorageVolDownload)."""
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, 0)
    total = float(vol.info()[2]) or None  # allocation: what will actually travel
    done = 0
    try:
        with open(dest, "wb") as fh:
            while True:
                data = stream.recv(CHUNK)
                if data in (-2, None) or data == b"":
                    break
                if isinstance(data, int):
                    raise WorkbenchError("Download failed", f"stream returned {data}")
                fh.write(data)
                done += len(data)
                monitor.progress(done, total, "B")
                if monitor.cancelled():
                    raise WorkbenchError("Cancelled", "download cancelled")
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


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


class Build:
    """One build of one plan. `run()` returns the artifact directory or raises BuildFailed/WorkbenchError."""

    def __init__(self, plan: BuildPlan, monitor: Monitor | None = None, *, work_dir: Path | None = None,
                 served_repo: str | None = None) -> None:
        self.plan = plan
        self.monitor = monitor or Monitor()
        self.work_dir = work_dir
        self.served_repo = served_repo  # host:port where a local tree is served to the guest
        self.detector = FailureDetector()
        self._lock = threading.Lock()
        self.console: list[str] = []
        self.installer_log: list[str] = []
        self.last_output = time.monotonic()
        self.stopped = threading.Event()
        self.stop_reason = ""
        self.conn_lost = threading.Event()
        self.conn: libvirt.virConnect | None = None
        self.dom: libvirt.virDomain | None = None
        self.readers: list[_Reader] = []
        self.timings: dict[str, float] = {}
        self._callback_ids: list[int] = []
        self._server: Any = None

    # -- callbacks from threads ------------------------------------------------------------------------------
    def received(self, channel: str, text: str) -> None:
        with self._lock:
            self.last_output = time.monotonic()
            (self.console if channel == "console" else self.installer_log).append(text)
            self.detector.feed(channel, text)
        self.monitor.output(channel, text)

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            reasons = {libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
                       libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
                       libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
                       libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed"}
            self.stop_reason = reasons.get(detail, f"stopped ({detail})")
            self.stopped.set()
        elif event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
            self.stop_reason = "crashed"

    def _closed(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self.conn_lost.set()

    # -- the build -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        plan = self.plan
        started = time.monotonic()
        with build_lock(plan.build_id), tempfile.TemporaryDirectory(prefix="ccis-build-",
                                                                   dir=self.work_dir) as tmpd:
            tmp = Path(tmpd)
            try:
                result = self._run(tmp)
            finally:
                t = time.monotonic()
                self._cleanup()
                self.timings["cleanup"] = round(time.monotonic() - t, 3)
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

    def _stage(self, name: str, detail: str = "") -> float:
        self.monitor.stage(name, detail)
        return time.monotonic()

    def _done(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 3)

    def _run(self, tmp: Path) -> BuildResult:
        plan = self.plan
        t0 = self._stage("prepare", "kickstart into a copy of the initrd")
        initrd = tmp / "initrd.img"
        inject_kickstart(plan.source.initrd, plan.kickstart, initrd)
        self._done("prepare", t0)

        t0 = self._stage("connect", plan.options.uri)
        self.conn = connect(plan.options.uri)
        self.conn.registerCloseCallback(self._closed, None)
        pool = ensure_pool(self.conn, plan.options.pool, plan.options.pool_path)
        self._done("connect", t0)

        t0 = self._stage("upload", "kernel, initrd and disks into volumes")
        paths: dict[str, str] = {}
        for spec in plan.volumes:
            if self.monitor.cancelled():
                return self._cancelled()
            local = {"kernel": plan.source.kernel, "initrd": initrd, "iso": plan.source.iso}.get(spec.role)
            capacity = Path(local).stat().st_size if local else spec.capacity
            fmt = spec.format
            try:
                vol = pool.createXML(_volume_xml(spec.name, fmt, capacity), 0)
            except libvirt.libvirtError as exc:
                raise WorkbenchError("Cannot create a volume", f"{spec.name}: {exc}",
                                     hint="check free space in the pool (ccis-workbench doctor)") from None
            if local:
                upload_file(self.conn, vol, Path(local), self.monitor)
            paths[spec.role] = vol.path()
        self._done("upload", t0)

        xml = plan.domain_xml(paths, {"host": socket.gethostname(), "pid": str(os.getpid())})
        if plan.source.kind == "dir" and self.served_repo is None:
            # a local tree reaches the guest over HTTP: user-mode networking sees the host's loopback at 10.0.2.2
            from ccis_workbench.rehearsal.httpserver import TreeServer

            self._server = TreeServer(plan.source.location).start()
            self.served_repo = f"{USER_NET_HOST}:{self._server.port}"
        if self.served_repo:
            xml = xml.replace("{served}", self.served_repo)
        t0 = self._stage("install", f"domain {plan.name} ({plan.domain_type})")
        try:
            flags = libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY
            self.dom = self.conn.createXML(xml, flags)
        except libvirt.libvirtError as exc:
            hint = ("KVM is not usable here: use --accel tcg" if plan.domain_type == "kvm" else
                    "see `ccis-workbench doctor`")
            return BuildResult("failed", "The install domain could not start", str(exc), hint, "start")
        self._callback_ids.append(self.conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None))
        self._attach()
        self.last_output = time.monotonic()
        self.dom.resume()
        result = self._watch(t0)
        self._done("install", t0)
        if result.status != "success":
            return result

        t0 = self._stage("download", "installed disk from its volume")
        self._stop_domain()
        disk = tmp / "disk.qcow2"
        disk_vol = pool.storageVolLookupByName(plan.volume("disk").name)  # type: ignore[union-attr]
        download_volume(self.conn, disk_vol, disk, self.monitor)
        export = None
        if plan.volume("export"):
            export = tmp / "export.raw"
            download_volume(self.conn, pool.storageVolLookupByName(plan.volume("export").name),  # type: ignore
                            export, self.monitor)
        self._done("download", t0)
        if self.monitor.cancelled():
            return self._cancelled()
        t0 = self._stage("artifacts", plan.artifact_dir)
        out = Producer(plan, self.monitor).produce(
            disk, export=export, console_log="".join(self.console), installer_log="".join(self.installer_log),
            packages=self.detector.packages, timings=self.timings,
            extra_manifest={"ending": result.kind, "libvirt_version": self._libvirt_version()})
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
                with self._lock:
                    verdict = self.detector.verdict()
                if verdict is not None and verdict.failed:
                    return self._failure(verdict)
                if verdict is not None and verdict.kind == "success":
                    self.monitor.note("info", "the installer completed and the guest powered off")
                    return BuildResult("success", "Installed", verdict.summary, kind="success")
                reason = self.stop_reason or "stopped"
                tail = self._tail()
                return BuildResult("crashed", "The guest stopped before the install completed",
                                   f"the domain ended ({reason}) without the installer reporting completion",
                                   "look at the last console lines below", "guest-stopped", tail)
            if self.conn_lost.is_set():
                outcome = self._reconnect()
                if outcome is not None:
                    return outcome
                continue
            if idle >= o.inactivity_timeout:
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
        deadline = time.monotonic() + RECONNECT_WINDOW
        conn = None
        while time.monotonic() < deadline and not self.monitor.cancelled():
            try:
                conn = libvirt.open(self.plan.options.uri)
                break
            except libvirt.libvirtError:
                time.sleep(0.5)
        if conn is None:
            return BuildResult("lost", "libvirtd went away", f"no connection to {self.plan.options.uri} for "
                               f"{RECONNECT_WINDOW:.0f}s", "start libvirtd again, then `ccis-workbench gc`", "lost")
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
        hints = {"disk-full": "raise disk_size (--disk-size)", "oom": "raise --memory",
                 "dracut-emergency": "check inst.repo/inst.stage2 and the tree (ccis-workbench plan)",
                 "post-failed": "the script's output is in installer.log",
                 "kickstart-error": "run `ccis-workbench lint` on the profile"}
        return BuildResult("failed", titles.get(verdict.kind, "The install failed"), verdict.summary,
                           hints.get(verdict.kind, ""), verdict.kind, verdict.lines)

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
        if self.conn is None:
            return
        for cid in self._callback_ids:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.domainEventDeregisterAny(cid)
        try:
            pool = self.conn.storagePoolLookupByName(self.plan.options.pool)
        except libvirt.libvirtError:
            pool = None
        if pool is not None:
            for spec in self.plan.volumes:
                with contextlib.suppress(libvirt.libvirtError):
                    pool.storageVolLookupByName(spec.name).delete(0)
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()
        self.conn = None

    def _save_failed_logs(self) -> str | None:
        """Failed builds keep their logs in the cache (never in the artifact directory)."""
        d = cache_root() / "logs" / self.plan.build_id
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / "console.log").write_text("".join(self.console))
            (d / "installer.log").write_text("".join(self.installer_log))
            (d / "kickstart.ks").write_text(self.plan.kickstart)
        except OSError:
            return None
        return str(d)


# -- gc ------------------------------------------------------------------------------------------------------

@dataclass
class Leftover:
    kind: str  # domain | volume
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


def gc(uri: str, pool_name: str = DEFAULT_POOL, dry_run: bool = False, force: bool = False) -> list[Leftover]:
    """Destroy leftover ccis- domains and delete leftover ccis- volumes (live builds are skipped unless force)."""
    conn = connect(uri)
    try:
        items = find_leftovers(conn, pool_name)
        for it in items:
            if dry_run or (it.live and not force):
                continue
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
    """Whether the host offers KVM (it may still hang: see docs/hosts.md; auto then picks kvm)."""
    if conn is not None:
        try:
            conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
            return True
        except libvirt.libvirtError:
            return False
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def doctor(uri: str, pool_name: str = DEFAULT_POOL, output_dir: str = ".") -> list[Check]:
    """Check the host for builds, with a fix for each problem."""
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
        try:
            pool = ensure_pool(conn, pool_name)
            info = pool.info()
            free = info[3]
            checks.append(Check("pool", True, f"pool {pool_name} active at {default_pool_path(uri)}, "
                                f"{free / (1 << 30):.1f} GiB free"))
            if free < 2 << 30:
                checks.append(Check("pool-space", False, f"only {free / (1 << 30):.1f} GiB free in the pool",
                                    "free space there (a build needs its disk size)", "warning"))
        except WorkbenchError as exc:
            checks.append(Check("pool", False, exc.message, exc.hint))
        kvm = kvm_available(conn)
        checks.append(Check("accelerator", True, "kvm offered by libvirt (if guests stay silent, use --accel tcg)"
                            if kvm else "no kvm: builds use TCG (slower)", severity="warning"))
        conn.close()
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
