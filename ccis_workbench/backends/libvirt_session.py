"""One libvirt connection for the build and the boot test: connect, the pool, volumes, uploads, reconnect, cleanup.

Every file a guest needs travels through storage volumes (upload/download streams), so a remote `qemu+ssh://`
host needs no shared filesystem. A `Session` remembers every volume it created and deletes them in `cleanup()`
(call it in `finally`); when libvirtd restarted meanwhile, it reconnects first. The accelerator verdict cache
(whether KVM guests really run on a libvirt host) also lives here: it is keyed by the host, the URI and the
hypervisor's version, which only a connection knows.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import libvirt

from ccis_workbench.core.cachedir import cache_root
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import DEFAULT_POOL, default_pool_path

CHUNK = 1 << 18
#: How long to wait for libvirtd to come back after the connection dropped.
RECONNECT_WINDOW = 30.0
#: The accelerator verdicts file under the workbench's cache directory.
ACCEL_CACHE = "accel-verdicts.json"

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


def connect(uri: str) -> libvirt.virConnect:
    """Open *uri*, or explain how to make it reachable."""
    ensure_event_loop()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        msg = str(exc)
        hint = (
            "start the daemons: `virtlogd -d && libvirtd -d` (no systemd), or `systemctl start libvirtd`"
            if "No such file" in msg or "Failed to connect" in msg
            else "check the URI and your permissions (the libvirt group, or use qemu:///session)"
        )
        raise WorkbenchError("libvirt is not reachable", f"{uri}: {msg}", hint=hint) from None


def reconnect(
    uri: str, window: float = RECONNECT_WINDOW, cancelled: Callable[[], bool] = lambda: False
) -> libvirt.virConnect | None:
    """A new connection to *uri* once libvirtd answers again, or None after *window* seconds (or a cancel)."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline and not cancelled():
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            time.sleep(0.5)  # polling libvirtd while it restarts
    return None


def _lock_path(run_id: str) -> Path:
    return cache_root() / "locks" / f"{run_id}.lock"


@contextlib.contextmanager
def build_lock(run_id: str) -> Iterator[None]:
    """Held while a build or boot test runs: `gc` leaves alone what belongs to a live run on this host."""
    path = _lock_path(run_id)
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


def build_is_live(run_id: str) -> bool:
    path = _lock_path(run_id)
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


def dead_owners() -> dict[str, int]:
    """The runs whose owner died on this host (SIGKILL, a crash): run id -> the dead owner's pid. Their lock file
    is still there but nobody holds it, it names this host, and that pid is no longer alive."""
    out: dict[str, int] = {}
    folder = cache_root() / "locks"
    if not folder.is_dir():
        return out
    here = socket.gethostname()
    for path in folder.glob("*.lock"):
        try:
            fields = path.read_text(encoding="ascii", errors="replace").split()
        except OSError:
            continue
        if len(fields) != 2 or not fields[0].isdigit() or fields[1] != here:
            continue  # being written just now, or another host's
        pid = int(fields[0])
        if build_is_live(path.stem) or _pid_alive(pid):
            continue
        out[path.stem] = pid
    return out


def forget_dead_owner(run_id: str) -> None:
    """Remove a dead run's stale lock file (once its domain and volumes are gone)."""
    if not build_is_live(run_id):
        _lock_path(run_id).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_pool(conn: libvirt.virConnect, name: str = DEFAULT_POOL, path: str | None = None) -> libvirt.virStoragePool:
    """The workbench's own directory pool, defined, built and started when missing."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        target = path or default_pool_path(conn.getURI())
        xml = (
            f"<pool type='dir'><name>{escape(name)}</name><target><path>{escape(target)}</path>"
            f"<permissions><mode>0711</mode></permissions></target></pool>"
        )
        try:
            pool = conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
        except libvirt.libvirtError as exc:
            raise WorkbenchError(
                "Cannot create the storage pool",
                f"{name} at {target}: {exc}",
                hint="check permissions, or pass --pool NAME of a usable pool",
            ) from None
        with contextlib.suppress(libvirt.libvirtError):
            pool.setAutostart(1)
    if not pool.isActive():
        try:
            pool.create(0)
        except libvirt.libvirtError as exc:
            raise WorkbenchError(
                "Cannot start the storage pool", f"{name}: {exc}", hint=f"virsh pool-start {name}"
            ) from None
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)
    return pool


def volume_xml(
    name: str, fmt: str, capacity: int, *, mode: str = "0600", backing: str | None = None, backing_format: str = "raw"
) -> str:
    """A volume's XML; the name and paths are escaped (a label may hold any character). Volumes are private (0600)
    by default: an initrd volume holds the kickstart, a disk what was installed; libvirt gives qemu access to the
    volumes of the domain it starts."""
    back = (
        f"<backingStore><path>{escape(backing)}</path><format type={quoteattr(backing_format)}/></backingStore>"
        if backing
        else ""
    )
    return (
        f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity}</capacity>"
        f"<allocation unit='bytes'>0</allocation><target><format type={quoteattr(fmt)}/>"
        f"<permissions><mode>{mode}</mode></permissions></target>{back}</volume>"
    )


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


def upload_bytes(conn: libvirt.virConnect, vol: libvirt.virStorageVol, data: bytes) -> None:
    """Stream *data* (a seed ISO) into a volume."""
    stream = conn.newStream(0)
    vol.upload(stream, 0, len(data), 0)
    try:
        view = memoryview(data)
        while view:
            n = stream.send(bytes(view[:CHUNK]))
            view = view[n:]
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


class Session:
    """A connection to one libvirt URI and one pool, and the volumes created through it.

    `open()` connects and makes sure the pool exists; `create_volume()` records every volume so that `cleanup()`
    (in `finally`) deletes them, reconnecting first when libvirtd restarted meanwhile. `cleanup()` never raises.
    """

    def __init__(
        self, uri: str, pool: str = DEFAULT_POOL, pool_path: str | None = None, monitor: Monitor | None = None
    ) -> None:
        self.uri, self.pool_name, self.pool_path = uri, pool, pool_path
        self.monitor = monitor or Monitor()
        self.conn: libvirt.virConnect | None = None
        self._pool: libvirt.virStoragePool | None = None
        self.volume_names: list[str] = []

    def open(self) -> Session:
        if self.conn is None:
            self.conn = connect(self.uri)
        return self

    @property
    def pool(self) -> libvirt.virStoragePool:
        if self._pool is None:
            assert self.conn is not None, "Session.open() first"
            self._pool = ensure_pool(self.conn, self.pool_name, self.pool_path)
        return self._pool

    def alive(self) -> bool:
        try:
            return self.conn is not None and bool(self.conn.isAlive())
        except libvirt.libvirtError:
            return False

    def reconnect(self, window: float = RECONNECT_WINDOW, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Replace a dead connection with a new one within *window* seconds; whether it worked."""
        conn = reconnect(self.uri, window, cancelled)
        if conn is None:
            return False
        if self.conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()
        self.conn, self._pool = conn, None
        return True

    def create_volume(
        self,
        name: str,
        fmt: str,
        capacity: int,
        *,
        mode: str = "0600",
        backing: str | None = None,
        backing_format: str = "raw",
        what: str = "a volume",
        hint: str = "check free space in the pool (ccis-workbench doctor)",
    ) -> libvirt.virStorageVol:
        """Create a volume in the pool (recorded for `cleanup`), or say why it cannot be made."""
        try:
            vol = self.pool.createXML(
                volume_xml(name, fmt, capacity, mode=mode, backing=backing, backing_format=backing_format), 0
            )
        except libvirt.libvirtError as exc:
            raise WorkbenchError(
                f"Cannot create {what}", f"{name}: {exc}", hint=hint) from None
        self.volume_names.append(name)
        return vol

    def volume(self, name: str) -> libvirt.virStorageVol:
        return self.pool.storageVolLookupByName(name)

    def upload(self, vol: libvirt.virStorageVol, source: Path | bytes) -> None:
        assert self.conn is not None
        if isinstance(source, bytes):
            upload_bytes(self.conn, vol, source)
        else:
            upload_file(self.conn, vol, source, self.monitor)

    def download(self, name: str, dest: Path) -> None:
        assert self.conn is not None
        download_volume(self.conn, self.volume(name), dest, self.monitor)

    def delete_volumes(self) -> None:
        """Delete every volume this session created (newest first). Never raises."""
        if self.conn is None or not self.volume_names:
            self.volume_names = []
            return
        try:
            pool = self.conn.storagePoolLookupByName(self.pool_name)
        except libvirt.libvirtError:
            return
        for name in reversed(self.volume_names):
            with contextlib.suppress(libvirt.libvirtError):
                pool.storageVolLookupByName(name).delete(0)
        self.volume_names = []

    def cleanup(self, domain: libvirt.virDomain | None = None) -> None:
        """Destroy *domain* (when given and running), delete the volumes. Never raises; the connection stays open."""
        if (domain is not None or self.volume_names) and self.conn is not None and not self.alive():
            self.reconnect(cancelled=lambda: False)
            if domain is not None and self.conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    domain = self.conn.lookupByName(domain.name())
        if domain is not None:
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()
        self.delete_volumes()

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()
        self.conn, self._pool = None, None

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
        self.close()


# -- the accelerator verdict cache ---------------------------------------------------------------------------


@dataclass
class AccelVerdict:
    """What is known about KVM guests on one libvirt host: they run (`kvm_works`) or stay silent."""

    key: str
    kvm_works: bool
    reason: str
    when: str
    path: Path

    def describe(self) -> str:
        state = "KVM guests run" if self.kvm_works else "KVM guests do not run"
        return (
            f"{state} on this host ({self.reason}; recorded {self.when} in {self.path}; delete that file to "
            f"probe again)"
        )


def hypervisor_key(conn: libvirt.virConnect) -> str:
    """host | URI | qemu version: a qemu upgrade or another host probes again."""
    try:
        v = conn.getVersion()
        uri = conn.getURI()
        host = conn.getHostname()
    except libvirt.libvirtError:
        return ""
    return f"{host} {uri} qemu-{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"


def _verdicts_path(cache: Path | None) -> Path:
    return (cache or cache_root()) / ACCEL_CACHE


def read_verdict(key: str, cache: Path | None = None) -> AccelVerdict | None:
    """The recorded verdict for *key*, or None (no file, no entry, or a file that is not ours)."""
    path = _verdicts_path(cache)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = data[key]
        return AccelVerdict(key, bool(entry["kvm_works"]), str(entry["reason"]), str(entry["when"]), path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_verdict(key: str, kvm_works: bool, reason: str, cache: Path | None = None) -> AccelVerdict | None:
    """Remember whether KVM guests run for *key* (written atomically); None when the cache is not writable."""
    if not key:
        return None
    path = _verdicts_path(cache)
    when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = {"kvm_works": kvm_works, "reason": reason, "when": when}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        return None
    return AccelVerdict(key, kvm_works, reason, when, path)
