"""Boot-test an image on libvirt: overlay disk, seed CD-ROM, serial-console session driven by pexpect, checks.

The artifact is never written: the guest boots a qcow2 overlay whose backing file is the artifact, larger than
the image so that growing the root file system is tested. The seed (NoCloud, ConfigDrive or OpenNebula) is
uploaded into a volume and attached as a CD-ROM. The domain is transient and created paused; `virsh console`
is attached under pexpect, then the domain is resumed, so no console output is lost. The harness waits for
the login prompt, logs in as the seed's per-run user (retrying while cloud-init is still creating it), becomes
root with sudo, runs every check with its timeout between unique markers, then collects systemd and
cloud-init timings. Endings: completed, no login prompt in time, no output, login failed, guest crashed,
console lost, cancelled; each is explained, and the domain and volumes are removed before `run` returns
(unless --keep-on-failure keeps a failed guest running). Credentials are redacted from everything recorded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape, quoteattr

import libvirt
import pexpect

from ccis_workbench.backends.libvirt_build import build_lock, connect, ensure_pool, kvm_available, upload_file
from ccis_workbench.core.checkrun import CheckRun
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.failure import classify_line
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import DEFAULT_POOL, NAMESPACE, PREFIX, domain_type, new_build_id
from ccis_workbench.core.report import BootTestResult, CheckResult, clean_text
from ccis_workbench.core.seed import SEED_KINDS, SeedData, build_seed, make_credentials, new_instance_id
from ccis_workbench.core.testspec import CheckPlan

#: A getty login prompt at the start of a line ("host login: ").
LOGIN_RE = re.compile(r"(?m)^[\r\x00]*(?:\x1b\[[0-9;?]*[A-Za-z]|\x1bc)*[A-Za-z0-9][\w.-]* login: ?")
PASSWORD_RE = re.compile(r"[Pp]assword: ?$")
INCORRECT_RE = re.compile(r"Login incorrect|Authentication failure|Permission denied")
#: A shell prompt at the very end of what was read.
PROMPT_RE = re.compile(r"[$#%>] ?(\x1b\[[0-9;?]*[A-Za-z])*$")
#: Console lines that end a boot for good (in addition to core.failure's kernel panic / emergency shell).
BOOT_FAILURES = (
    ("emergency", re.compile(r"You are in emergency mode|Give root password for maintenance|"
                             r"Cannot open access to console, the root account is locked")),
    ("kernel-panic", re.compile(r"Kernel panic - not syncing")),
)
DOMAIN_PREFIX = f"{PREFIX}boottest-"
#: How long to wait for libvirtd to come back when the connection drops.
RECONNECT_WINDOW = 30.0


@dataclass
class BootTestOptions:
    """How to run the boot test (CLI options and TUI settings)."""

    uri: str = "qemu:///system"
    accel: str = "auto"  # kvm | tcg | auto
    memory_mb: int = 1024
    vcpus: int = 2
    grow_mib: int = 1024
    login_timeout: float = 600.0
    inactivity_timeout: float = 300.0
    keep_on_failure: bool = False
    seed: str = "nocloud"  # nocloud | configdrive | opennebula | none
    hostname: str = "ccis-test"
    pool: str = DEFAULT_POOL
    pool_path: str | None = None
    network: str = "user"
    user: str | None = None  # None: a random ccis-XXXX
    run_id: str | None = None
    collect_timings: bool = True
    #: the image is the workbench's REHEARSAL system: its NoCloud reader takes the plain `user:`/`password:` form
    rehearsal: bool = False
    #: how to log in: "seed" (the per-run user the seed creates), "image" (*image_login*: a user the image itself
    #: has, e.g. Vagrant's vagrant/vagrant, for images that take no seed) or "none" (stop at the login prompt:
    #: the checks are skipped with *no_login_reason*)
    login: str = "seed"
    image_login: tuple[str, str] | None = None
    no_login_reason: str = "the image cannot be logged into here"

    def validate(self) -> None:
        if self.seed not in (*SEED_KINDS, "none"):
            raise WorkbenchError("Unknown seed", self.seed, hint=f"choose {', '.join(SEED_KINDS)} or none")
        if self.accel not in ("kvm", "tcg", "auto"):
            raise WorkbenchError("Bad accelerator", self.accel, hint="choose kvm, tcg or auto")
        if self.memory_mb < 256:
            raise WorkbenchError("Too little memory", f"{self.memory_mb} MiB", hint="give at least 256 MiB")
        if self.grow_mib < 0:
            raise WorkbenchError("Bad --grow", f"{self.grow_mib} MiB", hint="0 or more MiB")
        if self.login not in ("seed", "image", "none"):
            raise WorkbenchError("Bad login mode", self.login, hint="seed, image or none")
        if self.login == "image" and not self.image_login:
            raise WorkbenchError("No login given", "login mode image needs a user and password")


@dataclass
class ImageInfo:
    path: Path
    format: str
    virtual_size: int


def image_info(path: Path) -> ImageInfo:
    """Format and virtual size of a disk image, from `qemu-img info` (the real tool)."""
    if not path.is_file():
        raise WorkbenchError("Image not found", "the image does not exist", file=str(path))
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise WorkbenchError("qemu-img is missing", "the boot test reads the image with qemu-img",
                             hint="apt-get install qemu-utils")
    proc = subprocess.run([qemu_img, "info", "--output=json", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise WorkbenchError("Not a disk image", proc.stderr.strip() or "qemu-img cannot read it", file=str(path),
                             hint="give a qcow2 or raw artifact")
    data = json.loads(proc.stdout)
    fmt = data.get("format")
    if fmt not in ("qcow2", "raw"):
        raise WorkbenchError("Unsupported image format", f"{fmt}: the boot test boots qcow2 or raw images",
                             file=str(path), hint="boot-test the build's qcow2 (or raw) artifact")
    if fmt == "raw":
        # qemu-img calls any file raw: a raw disk that boots has an MBR or protective-MBR boot signature
        with open(path, "rb") as fh:
            head = fh.read(512)
        if len(head) < 512 or head[510:512] != b"\x55\xaa":
            raise WorkbenchError("Not a bootable disk image", "the file has no MBR boot signature (55 AA)",
                                 file=str(path), hint="give the build's qcow2 or raw disk artifact")
    return ImageInfo(path.resolve(), fmt, int(data["virtual-size"]))


def is_local_uri(uri: str) -> bool:
    """qemu:///system and qemu:///session are local; qemu+ssh://host/system is not."""
    return not urlparse(uri).netloc


def readable_by_anyone(path: Path) -> bool:
    """Whether any local user (qemu's, libvirt-qemu) can read *path*: o+r on the file, o+x on every folder."""
    try:
        if not path.stat().st_mode & 0o004:
            return False
        return all(p.stat().st_mode & 0o001 for p in path.resolve().parents)
    except OSError:
        return False


class _Console:
    """What the console printed: redacted, kept for the log, forwarded to the monitor, scanned for failures."""

    def __init__(self, monitor: Monitor, secrets: list[str]) -> None:
        self.monitor = monitor
        self.secrets = secrets
        self.parts: list[str] = []
        self.last_output = time.monotonic()
        self.failure: tuple[str, str] | None = None
        self.disconnected = False  # virsh console lost libvirtd (it says so and may keep running)
        self._partial = ""

    def write(self, text: str) -> int:
        for s in self.secrets:
            text = text.replace(s, "[redacted]")
        if "error: Disconnected from " in text:
            self.disconnected = True
        self.parts.append(text)
        self.last_output = time.monotonic()
        self.monitor.output("console", text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()[-4096:]
        for line in lines:
            self._scan(line)
        return len(text)

    def _scan(self, line: str) -> None:
        line = clean_text(line).strip()
        if self.failure is not None or "error: Disconnected from " in line:
            return
        for kind, rx in BOOT_FAILURES:
            if rx.search(line):
                self.failure = (kind, line)
                return
        m = classify_line(line)
        if m is not None and m.kind in ("kernel-panic", "dracut-emergency", "oom"):
            self.failure = (m.kind, line)

    def flush(self) -> None:
        """pexpect calls this on its log file."""

    def text(self) -> str:
        return clean_text("".join(self.parts))

    def tail(self, n: int = 15) -> list[str]:
        return [ln for ln in self.text().rstrip("\n").split("\n") if ln.strip()][-n:]


class _Ended(Exception):
    """The run cannot go on: ending kind and message."""

    def __init__(self, ending: str, message: str) -> None:
        super().__init__(message)
        self.ending = ending
        self.message = message


class BootTest:
    """One boot test of one image; `run()` returns the result and leaves nothing behind."""

    def __init__(self, image: str | Path, checks: CheckPlan | list[Check], options: BootTestOptions | None = None,
                 monitor: Monitor | None = None, *, label: str | None = None) -> None:
        self.image = Path(image)
        self.options = options or BootTestOptions()
        self.options.validate()
        self.monitor = monitor or Monitor()
        self.checks = CheckRun(checks, self.monitor)
        self.label = label or self.image.stem
        self.run_id = self.options.run_id or new_build_id()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")[:32] or "image"
        self.name = f"{DOMAIN_PREFIX}{safe}-{self.run_id}"
        self.conn: Any = None
        self.dom: Any = None
        self.volumes: list[Any] = []
        self.volume_names: list[str] = []
        self.child: pexpect.spawn | None = None
        self.console: _Console | None = None
        self.creds: Any = None
        self.instance_id = new_instance_id()
        self._marker = 0
        self.destroy_seconds = 0.0

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self) -> BootTestResult:
        o = self.options
        t0 = time.monotonic()
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        info = image_info(self.image)
        if o.login == "image" and o.image_login:
            self.creds = make_credentials(o.image_login[0])
            self.creds.password, self.creds.public_password = o.image_login[1], True
        else:
            self.creds = make_credentials(o.user)
        self.console = _Console(self.monitor, self.creds.secrets())
        result = BootTestResult(run_id=self.run_id, label=self.label, image=str(info.path), started=started,
                                uri=o.uri, domain=self.name, domain_type="", seed=o.seed, user=self.creds.user)
        result.timings["harness"] = {"image-and-credentials": round(time.monotonic() - t0, 3)}
        keep = False
        try:
            with build_lock(self.run_id):
                try:
                    self._run(info, result)
                    result.ending = "completed"
                    result.ending_message = "every check ran"
                except _Ended as end:
                    result.ending, result.ending_message = end.ending, end.message
                    self.monitor.note("error" if end.ending != "cancelled" else "warning", end.message)
                except WorkbenchError as exc:
                    result.ending, result.ending_message = "error", f"{exc.title}: {exc.message}"
                    self.monitor.note("error", result.ending_message)
                except KeyboardInterrupt:
                    result.ending = "cancelled"
                    result.ending_message = "interrupted: the guest was destroyed and its volumes removed"
                result.checks += self.checks.not_run(result.checks, result.ending_message)
                keep = o.keep_on_failure and not result.passed and self.dom is not None and self._alive()
                if keep:
                    result.kept_domain = self.name
                    pw = self.creds.workdir / "password"
                    pw.write_text(self.creds.password + "\n")
                    pw.chmod(0o600)
                    result.kept_credentials = str(self.creds.workdir)
                    result.notes.append(f"the guest {self.name} was kept running (--keep-on-failure)")
        finally:
            if not keep:
                self.creds.cleanup()  # first: it cannot fail, whatever libvirt does next
            t_clean = time.monotonic()
            if self.child is not None:
                self.child.logfile_read = None  # nothing after the verdict goes into the log
            if not keep:
                self._cleanup()  # first: once the domain is gone, virsh console ends by itself
            t_console = time.monotonic()
            self._close_console()
            hs = result.timings.setdefault("harness", {})
            hs["cleanup"] = round(time.monotonic() - t_clean, 3)
            hs["cleanup-console"] = round(time.monotonic() - t_console, 3)
            hs["cleanup-destroy"] = round(self.destroy_seconds, 3)
            if self.conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self.conn.close()
            result.total_time = time.monotonic() - t0
            result.console_log = self.console.text() if self.console else ""
        return result

    def _run(self, info: ImageInfo, result: BootTestResult) -> None:
        o = self.options
        m = self.monitor
        m.stage("prepare", f"{info.path.name}: overlay disk +{o.grow_mib} MiB, {o.seed} seed")
        h = result.timings.setdefault("harness", {})
        t = time.monotonic()
        self.conn = connect(o.uri)
        dtype = domain_type(o.accel, kvm_available(self.conn) if o.accel == "auto" else False)
        result.domain_type = dtype
        pool = ensure_pool(self.conn, o.pool, o.pool_path)
        disk = self._overlay(pool, info)
        h["volumes"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        seed_vol = self._seed(pool) if o.seed != "none" else None
        h["seed"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        xml = self.domain_xml(disk.name(), seed_vol.name() if seed_vol is not None else None, dtype)
        self._check_cancel()
        try:
            self.dom = self.conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            raise WorkbenchError("The guest did not start", str(exc),
                                 hint="try --accel tcg" if dtype == "kvm" else "") from None
        h["domain"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        self._attach()
        h["console"] = round(time.monotonic() - t, 3)
        m.stage("boot", f"{self.name} ({'KVM' if dtype == 'kvm' else 'TCG'}); waiting for the login prompt")
        t_boot = time.monotonic()
        self.dom.resume()
        self._wait_login_prompt(t_boot)
        result.boot_to_login = time.monotonic() - t_boot
        m.note("info", f"login prompt after {result.boot_to_login:.1f} s")
        if o.login == "none":
            result.notes.append(f"the guest booted to its login prompt; no check ran: {o.no_login_reason}")
            m.note("warning", f"no check runs: {o.no_login_reason}")
            result.checks += self.checks.skip_selected(o.no_login_reason)
            result.checks += self.checks.skipped_results()
            return
        m.stage("login", f"as {self.creds.user}")
        t_login = time.monotonic()
        as_root = self._login(t_boot + o.login_timeout)
        result.login_time = time.monotonic() - t_login
        if not as_root:
            result.notes.append(f"sudo did not work for {self.creds.user}: the checks ran as that user, not root")
        selected = self.checks.selected
        m.stage("checks", f"{len(selected)} checks")
        t_checks = time.monotonic()
        for i, (check, group) in enumerate(selected):
            self._check_cancel()
            result.checks.append(self._run_check(check, group))
            m.progress(i + 1, len(selected), "checks")
        result.checks_time = time.monotonic() - t_checks
        result.checks += self.checks.skipped_results()
        if o.collect_timings:
            with contextlib.suppress(_Ended):
                result.timings.update(self._timings())

    # -- libvirt ------------------------------------------------------------------------------------------------

    def _overlay(self, pool: Any, info: ImageInfo) -> Any:
        """A qcow2 overlay over the artifact (local: by path; remote: over an uploaded copy)."""
        if is_local_uri(self.options.uri) and readable_by_anyone(info.path):
            backing, fmt = str(info.path), info.format
        else:
            # a remote libvirt host, or a file qemu's user cannot reach (e.g. under /root): upload a copy for
            # this run (deleted with the other volumes)
            self.monitor.note("info", f"uploading {info.path.name} into pool {self.options.pool} "
                              f"({info.path.stat().st_size >> 20} MiB)")
            backing, fmt = self._base_copy(pool, info), info.format
        capacity = info.virtual_size + self.options.grow_mib * 1048576
        xml = (f"<volume><name>{escape(self.name)}-disk.qcow2</name>"
               f"<capacity unit='bytes'>{capacity}</capacity><allocation unit='bytes'>0</allocation>"
               f"<target><format type='qcow2'/><permissions><mode>0600</mode></permissions></target>"
               f"<backingStore><path>{escape(backing)}</path><format type={quoteattr(fmt)}/>"
               f"</backingStore></volume>")
        try:
            vol = pool.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise WorkbenchError("Cannot create the test disk", str(exc),
                                 hint="the libvirt host must be able to read the image") from None
        self.volumes.append(vol)
        self.volume_names.append(vol.name())
        return vol

    def _base_copy(self, pool: Any, info: ImageInfo) -> str:
        size = info.path.stat().st_size
        vol = pool.createXML(f"<volume><name>{escape(self.name)}-base.{info.format}</name>"
                             f"<capacity unit='bytes'>{size}</capacity><target><format type='raw'/>"
                             f"<permissions><mode>0600</mode></permissions></target></volume>", 0)
        self.volumes.append(vol)
        self.volume_names.append(vol.name())
        upload_file(self.conn, vol, info.path, self.monitor)
        return str(vol.path())

    def _seed(self, pool: Any) -> Any:
        data = build_seed(self.options.seed, SeedData(self.instance_id, self.options.hostname, self.creds,
                                                      legacy=self.options.rehearsal))
        vol = pool.createXML(f"<volume><name>{escape(self.name)}-seed.iso</name>"
                             f"<capacity unit='bytes'>{len(data)}</capacity><target><format type='raw'/>"
                             f"<permissions><mode>0600</mode></permissions></target></volume>", 0)
        self.volumes.append(vol)
        self.volume_names.append(vol.name())
        stream = self.conn.newStream(0)
        vol.upload(stream, 0, len(data), 0)
        view = memoryview(data)
        while view:
            n = stream.send(bytes(view[:262144]))
            view = view[n:]
        stream.finish()
        return vol

    def domain_xml(self, disk_volume: str, seed_volume: str | None, dtype: str) -> str:
        """The transient test domain: virtio disk, the seed on an IDE CD-ROM (every kernel has ata_piix),
        user-mode networking, serial console, ACPI so poweroff ends it."""
        o = self.options
        meta = {"id": self.run_id, "kind": "boot-test", "label": self.label, "image": str(self.image),
                "seed": o.seed}
        meta_xml = "".join(f"      <ccis:{k}>{escape(str(v))}</ccis:{k}>\n" for k, v in meta.items())
        meta_xml += "".join(f"      <ccis:volume>{escape(v.name())}</ccis:volume>\n" for v in self.volumes)
        seed = ""
        if seed_volume:
            seed = (f"    <disk type='volume' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n"
                    f"      <source pool={quoteattr(o.pool)} volume={quoteattr(seed_volume)}/>\n"
                    f"      <target dev='hdc' bus='ide'/>\n      <readonly/>\n    </disk>\n")
        nic = ("    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n" if o.network == "user"
               else f"    <interface type='network'>\n      <source network={quoteattr(o.network)}/>\n"
                    f"      <model type='virtio'/>\n    </interface>\n")
        cpu = "  <cpu mode='maximum' check='none'/>\n" if dtype == "qemu" else ""
        return (
            f"<domain type='{dtype}'>\n"
            f"  <name>{escape(self.name)}</name>\n"
            f"  <title>{escape(f'CCIS Workbench boot test of {self.label}')}</title>\n"
            f"  <description>Transient boot-test domain created by ccis-workbench; `ccis-workbench gc` removes "
            f"leftovers.</description>\n"
            f"  <metadata>\n    <ccis:boottest xmlns:ccis={quoteattr(NAMESPACE)}>\n{meta_xml}"
            f"    </ccis:boottest>\n  </metadata>\n"
            f"  <memory unit='MiB'>{o.memory_mb}</memory>\n"
            f"  <vcpu>{o.vcpus}</vcpu>\n"
            f"  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n"
            f"  <features>\n    <acpi/>\n    <apic/>\n  </features>\n{cpu}"
            f"  <clock offset='utc'/>\n"
            f"  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
            f"  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n"
            f"    <disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2' cache='unsafe'/>\n"
            f"      <source pool={quoteattr(o.pool)} volume={quoteattr(disk_volume)}/>\n"
            f"      <target dev='vda' bus='virtio'/>\n    </disk>\n"
            f"{seed}{nic}"
            f"    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
            f"    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
            f"    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
            f"    <memballoon model='none'/>\n"
            f"  </devices>\n"
            f"</domain>\n")

    def _conn_ok(self) -> bool:
        try:
            return self.conn is not None and bool(self.conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _reconnect(self) -> bool:
        """After libvirtd went away: reconnect within RECONNECT_WINDOW and find the domain and volumes again."""
        deadline = time.monotonic() + RECONNECT_WINDOW
        while time.monotonic() < deadline:
            try:
                conn = libvirt.open(self.options.uri)
            except libvirt.libvirtError:
                time.sleep(0.5)  # polling libvirtd while it restarts
                continue
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()
            self.conn = conn
            try:
                self.dom = conn.lookupByName(self.name)
            except libvirt.libvirtError:
                self.dom = None
            try:
                pool = conn.storagePoolLookupByName(self.options.pool)
                self.volumes = [pool.storageVolLookupByName(n) for n in self.volume_names
                                if n in pool.listVolumes()]
            except libvirt.libvirtError:
                pass
            self.monitor.note("warning", "the connection to libvirtd was lost and is back")
            return True
        return False

    def _alive(self) -> bool:
        if self.dom is None:
            return False
        if not self._conn_ok() and not self._reconnect():
            raise _Ended("error", f"lost the connection to libvirtd ({self.options.uri}) for more than "
                         f"{RECONNECT_WINDOW:.0f} s")
        if self.dom is None:
            return False
        try:
            state = self.dom.state()[0]
        except libvirt.libvirtError:
            return False
        return state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_BLOCKED)

    def _cleanup(self) -> None:
        """Destroy the domain and delete the volumes, reconnecting first if libvirtd restarted meanwhile."""
        if (self.dom is not None or self.volume_names) and not self._conn_ok():
            self._reconnect()
        t = time.monotonic()
        if self.dom is not None:
            # libvirt's destroy of a TCG qemu takes about 1.2 s here (SIGTERM, then its teardown)
            with contextlib.suppress(libvirt.libvirtError):
                self.dom.destroy()
            self.dom = None
        self.destroy_seconds: float = time.monotonic() - t
        for vol in reversed(self.volumes):
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
        self.volumes = []
        self.volume_names = []

    # -- console ------------------------------------------------------------------------------------------------

    def _attach(self) -> None:
        virsh = shutil.which("virsh")
        if virsh is None:
            raise WorkbenchError("virsh is missing", "the serial console is attached with `virsh console`",
                                 hint="apt-get install libvirt-clients")
        assert self.console is not None
        self.child = pexpect.spawn(virsh, ["-c", self.options.uri, "console", "--force", self.name],
                                   encoding="utf-8", codec_errors="replace", timeout=30, echo=False,
                                   dimensions=(50, 1000))
        try:
            self.child.expect(r"Escape character is", timeout=30)
            self.child.logfile_read = self.console
        except (pexpect.TIMEOUT, pexpect.EOF):
            raise WorkbenchError("Console not available", f"virsh console {self.name} did not attach: "
                                 f"{clean_text(self.child.before or '')[-300:]}") from None

    def _close_console(self) -> None:
        if self.child is not None:
            with contextlib.suppress(Exception):
                self.child.logfile_read = None
                # ptyprocess sleeps 0.1 s after each signal by default; virsh needs no grace period
                self.child.ptyproc.delayafterclose = 0.0
                self.child.ptyproc.delayafterterminate = 0.02
                self.child.close(force=True)
            self.child = None

    def _check_cancel(self) -> None:
        if self.monitor.cancelled():
            raise _Ended("cancelled", "cancelled: the guest was destroyed and its volumes removed")

    def _expect(self, patterns: list[Any], timeout: float, deadline: float | None = None,
                deadline_ending: tuple[str, str] | None = None) -> int:
        """expect() in short slices, so cancel, a crash and console silence are noticed within a second.
        Returns the index of the pattern that matched, or -1 after *timeout* seconds."""
        assert self.child is not None and self.console is not None
        o = self.options
        end = time.monotonic() + timeout
        last_state = time.monotonic()
        reattached = False
        while True:
            self._check_cancel()
            if self.console.failure is not None:
                kind, line = self.console.failure
                raise _Ended("crashed", f"the guest failed to boot ({kind}): {line}")
            now = time.monotonic()
            if deadline is not None and now >= deadline and deadline_ending is not None:
                raise _Ended(*deadline_ending)
            if now - self.console.last_output > o.inactivity_timeout:
                other = "tcg" if self._is_kvm() else "kvm"
                raise _Ended("no-output", f"the console printed nothing for {o.inactivity_timeout:.0f} s; last "
                             f"line: {(self.console.tail(1) or ['(nothing)'])[0]!r}; if the guest hangs right "
                             f"after the kernel starts, try --accel {other}")
            if now >= end:
                return -1
            if now - last_state >= 2.0:
                last_state = now
                if not self._alive():
                    raise _Ended("crashed", "the guest stopped (crashed or powered off); last console lines: "
                                 + " | ".join(self.console.tail(5)))
            try:
                if self.console.disconnected:
                    self.console.disconnected = False
                    raise pexpect.EOF("virsh console lost libvirtd")
                return int(self.child.expect(patterns, timeout=min(0.5, max(0.01, end - now))))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                if not self._alive():
                    raise _Ended("crashed", "the guest stopped (crashed or powered off); last console lines: "
                                 + " | ".join(self.console.tail(5))) from None
                # the guest runs but virsh console ended (libvirtd restarted): attach again once
                if reattached:
                    raise _Ended("console-lost", "the serial console closed while the guest still runs") from None
                reattached = True
                self._close_console()
                try:
                    self._attach()
                except WorkbenchError:
                    if not self._alive():  # it was going down when the console closed
                        raise _Ended("crashed", "the guest stopped (crashed or powered off); last console lines: "
                                     + " | ".join(self.console.tail(5))) from None
                    raise _Ended("console-lost", "the serial console closed and cannot be attached again "
                                 "while the guest still runs") from None

    def _is_kvm(self) -> bool:
        try:
            return "type='kvm'" in self.dom.XMLDesc(0) or 'type="kvm"' in self.dom.XMLDesc(0)
        except (libvirt.libvirtError, AttributeError):
            return False

    def _send(self, text: str) -> None:
        assert self.child is not None
        self.child.send(text + "\r")

    def _wait_login_prompt(self, t_boot: float) -> None:
        o = self.options
        i = self._expect([LOGIN_RE], o.login_timeout, deadline=t_boot + o.login_timeout,
                         deadline_ending=("no-login", f"no login prompt within {o.login_timeout:.0f} s"))
        if i != 0:
            raise _Ended("no-login", f"no login prompt within {o.login_timeout:.0f} s; last console lines: "
                         + " | ".join(self.console.tail(5) if self.console else []))

    def _login(self, deadline: float) -> bool:
        """Log in on the serial console, retrying while the seed's user does not exist yet; then become root.
        Returns whether the shell is root."""
        user, password = self.creds.user, self.creds.password
        ending = ("login-failed", f"{user} could not log in before the login deadline (the seed's user-data "
                  "was not applied, or the password was refused)")
        ready = re.compile(r"__CCIS_READY__")
        self._send(user)
        attempts = 1
        last_probe = 0.0
        t_password = None
        while True:
            i = self._expect([PASSWORD_RE, INCORRECT_RE, LOGIN_RE, ready, PROMPT_RE], 5.0, deadline, ending)
            now = time.monotonic()
            if i == 0:
                self._send(password)
                t_password = now
            elif i == 1:
                t_password = None  # login will ask again after its failure delay
                self.monitor.note("info", f"login as {user} refused (attempt {attempts}); cloud-init may still be "
                                  "creating the user: retrying")
            elif i == 2:
                attempts += 1
                self._send(user)
            elif i == 3:
                break
            elif (i == 4 or (i == -1 and t_password is not None and now - t_password > 8)) and now - last_probe > 3:
                self._send('echo __CCIS_""READY__')
                last_probe = now
        # a wider terminal, then root through sudo when the user has it (the seed grants it), then the run's
        # variables; each step waits for its marker (sudo may swallow a line typed ahead of it)
        self._command("stty -echo cols 1000 2>/dev/null; TERM=dumb; export TERM; unset HISTFILE", 30)
        code, _ = self._command("sudo -n true </dev/null", 30)
        if code == 0:
            self._send("sudo -n -s")
        setup = (f"stty -echo cols 1000 2>/dev/null; TERM=dumb; export TERM; unset HISTFILE; "
                 f"export CCIS_USER={shlex.quote(user)} CCIS_INSTANCE_ID={shlex.quote(self.instance_id)} "
                 f"CCIS_GROW_MIB={self.options.grow_mib}; dmesg -n 1 2>/dev/null; id -u")
        code, out = self._command(setup, 30)
        return code == 0 and out.strip().split("\n")[-1].strip() == "0"

    def _command(self, command: str, timeout: float) -> tuple[int | None, str]:
        """Run *command* in the guest shell between unique markers; (exit status or None on timeout, output)."""
        self._marker += 1
        n = self._marker
        begin = re.compile(rf"__CCIS_B{n}__\r?\n")
        end = re.compile(rf"__CCIS_E{n}_(\d+)__")
        self._send(f'echo __CCIS_""B{n}__; {command}; echo __CCIS_""E{n}_$?__')
        if self._expect([begin], 30.0) != 0:
            raise _Ended("console-lost", "the guest shell stopped answering on the serial console")
        if self._expect([end], timeout) != 0:
            output = clean_text(self.child.before or "") if self.child else ""
            self._interrupt(n)
            return None, output
        assert self.child is not None
        output = clean_text(self.child.before or "")
        return int(self.child.match.group(1)), output

    def _interrupt(self, n: int) -> None:
        """Stop a command that ran past its timeout (Ctrl-C), then resynchronise with the shell."""
        assert self.child is not None
        self.child.send("\x03")
        sync = re.compile(rf"__CCIS_S{n}__")
        for _ in range(3):
            self._send(f'echo __CCIS_""S{n}__')
            if self._expect([sync], 10.0) == 0:
                return
            self.child.send("\x03")
        raise _Ended("console-lost", "the guest shell did not come back after a check timed out")

    def _run_check(self, check: Check, group: str) -> CheckResult:
        self.checks.start(check)
        t0 = time.monotonic()
        code, output = self._command(f"sh -c {shlex.quote(check.command)} </dev/null 2>&1", check.timeout)
        return self.checks.judge(check, group, code, output, time.monotonic() - t0)

    def _timings(self) -> dict[str, Any]:
        """systemd's and cloud-init's own boot timings, where the guest has the tools."""
        out: dict[str, Any] = {}
        code, text = self._command("systemd-analyze time 2>/dev/null </dev/null", 60)
        if code == 0:
            sd = parse_systemd_analyze(text)
            if sd:
                out["systemd"] = sd
        code, text = self._command("cloud-init analyze show 2>/dev/null </dev/null | "
                                   "grep -E 'Finished stage|Total Time'", 90)
        if code == 0:
            ci = parse_cloud_init_analyze(text)
            if ci:
                out["cloud-init"] = ci
        return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(min|ms|us|s|h)")


def _seconds(text: str) -> float:
    scale = {"h": 3600.0, "min": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    return sum(float(v) * scale[u] for v, u in _DURATION.findall(text))


def parse_systemd_analyze(text: str) -> dict[str, float]:
    """'Startup finished in 1.2s (kernel) + 3.4s (initrd) + 1min 2.5s (userspace) = 1min 7.1s' -> seconds."""
    m = re.search(r"Startup finished in (.*?) = ([^\n]+)", text)
    if not m:
        return {}
    out: dict[str, float] = {}
    for part in m.group(1).split(" + "):
        pm = re.match(r"\s*(.+?)\s+\(([a-z ]+)\)", part)
        if pm:
            out[pm.group(2)] = round(_seconds(pm.group(1)), 3)
    out["total"] = round(_seconds(m.group(2).split("\n")[0]), 3)
    return out


def parse_cloud_init_analyze(text: str) -> dict[str, float]:
    """`cloud-init analyze show` stage lines -> {stage: seconds, total}; the last boot's record wins."""
    out: dict[str, float] = {}
    for stage, secs in re.findall(r"Finished stage: \(([\w-]+)\) ([\d.]+) seconds", text):
        out[stage] = round(float(secs), 3)
    totals = re.findall(r"Total Time: ([\d.]+) seconds", text)
    if totals:
        out["total"] = round(float(totals[-1]), 3)
    return out


def run_boot_test(image: str | Path, checks: CheckPlan | list[Check], options: BootTestOptions | None = None,
                  monitor: Monitor | None = None, *, label: str | None = None) -> BootTestResult:
    """Boot-test *image* with *checks* (a CheckPlan from core.testspec, or a plain list of Check)."""
    return BootTest(image, checks, options, monitor, label=label).run()

