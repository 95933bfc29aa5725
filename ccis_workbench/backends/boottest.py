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

What the run does is computed first, without libvirt, by core/boottest_plan.py (`plan_boot_test`: the volumes,
seed and domain XML that `boot-test --plan` shows); the volumes go through libvirt_session.Session. Under
`--accel auto` with KVM, a guest whose kernel prints nothing on the console within `KVM_PROBE_WINDOW_BOOT` seconds
is destroyed with its volumes and the boot test restarts once under TCG (`BootProbe`), saying so in the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import re
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pexpect

from ccis_workbench.backends.emulator import (
    EMULATOR_DIED,
    HOST_FAULT_RESTARTS,
    EmulatorFrozen,
    death_while_starting,
    died_while_starting,
    emulator_death,
    resume_within,
    start_within,
    stop_reason,
)
from ccis_workbench.backends.libvirt_build import kvm_available
from ccis_workbench.backends.libvirt_session import (
    RECONNECT_WINDOW,
    Session,
    build_lock,
    hypervisor_key,
    read_verdict,
    record_verdict,
)
from ccis_workbench.core.boottest_plan import (  # noqa: F401  (re-exported: the boot test's public names)
    DOMAIN_PREFIX,
    BootTestOptions,
    BootTestPlan,
    ImageInfo,
    boot_test_name,
    image_info,
    is_local_uri,
    plan_boot_test,
    readable_by_anyone,
)
from ccis_workbench.core.checkrun import CheckRun
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.failure import classify_line
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import (
    KVM_PROBE_WINDOW_BOOT,
    AccelFallback,
    domain_type,
    kernel_output_seen,
    new_build_id,
)
from ccis_workbench.core.report import BootTestResult, CheckResult, clean_text
from ccis_workbench.core.seed import (
    SeedData,
    StreamRedactor,
    build_seed,
    keep_password,
    make_credentials,
    redact_text,
)
from ccis_workbench.core.testspec import CheckPlan
from ccis_workbench.core.wording import counted

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
    # OVMF found nothing to boot and fell back to its built-in shell (or said so): a BIOS-only image under UEFI
    ("no-uefi-boot", re.compile(r'BdsDxe: (?:loading|starting) Boot\w+ "EFI Internal Shell"|'
                                r"No bootable option or device was found")),
)


@dataclass
class BootProbe:
    """How a boot test under `--accel auto` finds out that KVM guests hang here (see libvirt_build.KvmProbe): the
    console is given to *detector* until the kernel proper runs; after *window* seconds without it the guest is
    destroyed, its volumes deleted, and the boot test restarts once under TCG. *applies* takes the options and
    the domain type chosen."""

    window: float = KVM_PROBE_WINDOW_BOOT
    detector: Callable[[str], bool] = kernel_output_seen
    applies: Callable[[BootTestOptions, str], bool] = lambda o, dtype: o.accel == "auto" and dtype == "kvm"
    cache: Path | None = None


class _Console:
    """What the console printed: redacted, kept for the log, forwarded to the monitor, scanned for failures."""

    def __init__(self, monitor: Monitor, secrets: list[str]) -> None:
        self.monitor = monitor
        self.redactor = StreamRedactor(secrets)
        self.parts: list[str] = []
        self.last_output = time.monotonic()
        self.failure: tuple[str, str] | None = None
        self.disconnected = False  # virsh console lost libvirtd (it says so and may keep running)
        self._partial = ""

    def write(self, raw: str) -> int:
        # redacted on the assembled stream: a secret split across two reads is caught (see StreamRedactor)
        self.last_output = time.monotonic()
        self._add(self.redactor.feed(raw))
        return len(raw)

    def close(self) -> None:
        """The end of the console: what the redactor held back (never a whole secret) joins the log."""
        self._add(self.redactor.flush())

    def _add(self, text: str) -> None:
        if not text:
            return
        if "error: Disconnected from " in text:
            self.disconnected = True
        self.parts.append(text)
        self.monitor.output("console", text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()[-4096:]
        for line in lines:
            self._scan(line)

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


def redact_result(result: BootTestResult, secrets: list[str]) -> None:
    """Every text of *result* (checks, notes, endings, console log, timings) with *secrets* redacted, in place:
    the last guard before a report, a JUnit file or `propose` evidence is written from it."""

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, secrets)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                setattr(value, f.name, scrub(getattr(value, f.name)))
            return value
        return value

    scrub(result)


class _Ended(Exception):
    """The run cannot go on: ending kind and message."""

    def __init__(self, ending: str, message: str) -> None:
        super().__init__(message)
        self.ending = ending
        self.message = message


class BootTest:
    """One boot test of one image; `run()` returns the result and leaves nothing behind.

    *on_result*, when given, receives the finished result (verdict, checks, console log, redacted) as soon as the
    checks are done, before the guest is destroyed (libvirt's destroy of a TCG qemu takes about a second): the
    caller reports at once, and `run()` still destroys the guest and deletes its volumes before it returns. The
    result it returns afterwards adds the cleanup's timings."""

    def __init__(self, image: str | Path, checks: CheckPlan | list[Check], options: BootTestOptions | None = None,
                 monitor: Monitor | None = None, *, label: str | None = None,
                 kvm_probe: BootProbe | None = BootProbe(),  # noqa: B008
                 on_result: Callable[[BootTestResult], None] | None = None) -> None:
        self.image = Path(image)
        self.options = options or BootTestOptions()
        self.options.validate()
        self.monitor = monitor or Monitor()
        self.checks_source = checks
        self.checks = CheckRun(checks, self.monitor)
        self.label = label or self.image.stem
        self.run_id = self.options.run_id or new_build_id()
        self.name = boot_test_name(self.label, self.run_id)
        self.kvm_probe = kvm_probe
        self.on_result = on_result
        self._probe: BootProbe | None = None
        self.plan: BootTestPlan | None = None
        self.session: Session | None = None
        self.dom: Any = None
        self.child: pexpect.spawn | None = None
        self.console: _Console | None = None
        self.creds: Any = None
        self.instance_id = ""
        self._marker = 0
        self.destroy_seconds = 0.0
        self.fallback: AccelFallback | None = None
        self._t_boot = time.monotonic()
        self._stop_reason = ""  # how libvirt said the guest's domain stopped (`emulator.stop_reason`)
        self._stop_event = threading.Event()
        self._event_id: int | None = None

    @property
    def conn(self) -> Any:
        return self.session.conn if self.session is not None else None

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self) -> BootTestResult:
        o = self.options
        t0 = time.monotonic()
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        info = image_info(self.image)
        self.plan = plan_boot_test(self.image, self.checks_source, dataclasses.replace(o, run_id=self.run_id),
                                   label=self.label, info=info)
        self.instance_id = self.plan.instance_id
        if o.login == "image" and o.image_login:
            self.creds = make_credentials(o.image_login[0])
            self.creds.password, self.creds.public_password = o.image_login[1], True
        else:
            self.creds = make_credentials(self.plan.user)
        self.console = _Console(self.monitor, self.creds.secrets())
        self.checks.redact = self.creds.redact
        result = BootTestResult(run_id=self.run_id, label=self.label, image=str(info.path), started=started,
                                uri=o.uri, domain=self.name, domain_type="", seed=o.seed, user=self.creds.user,
                                rehearsal=o.rehearsal)
        result.timings["harness"] = {"image-and-credentials": round(time.monotonic() - t0, 3)}
        keep = False
        try:
            with build_lock(self.run_id):
                try:
                    self._run_with_fallback(info, result)
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
                    keep_password(self.creds, self.name)
                    result.kept_credentials = str(self.creds.workdir)
                    result.notes.append(f"the guest {self.name} was kept running (--keep-on-failure)")
                if self.on_result is not None:
                    self._report_early(result, t0)
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
            if self.session is not None:
                self.session.close()
            result.total_time = time.monotonic() - t0
            if self.console is not None:
                self.console.close()
            result.console_log = self.console.text() if self.console else ""
            redact_result(result, self.creds.secrets())
        return result

    def _report_early(self, result: BootTestResult, t0: float) -> None:
        """Give *on_result* the result as it will be reported, while the guest still runs: nothing after the
        verdict goes into the console log, what the redactor held back joins it, every text is redacted."""
        assert self.on_result is not None and self.console is not None
        if self.child is not None:
            self.child.logfile_read = None
        self.console.close()
        result.console_log = self.console.text()
        result.total_time = time.monotonic() - t0
        result.timings.setdefault("harness", {})["reported"] = round(result.total_time, 3)
        redact_result(result, self.creds.secrets())
        self.on_result(result)

    def _run_with_fallback(self, info: ImageInfo, result: BootTestResult) -> None:
        """The run; under `--accel auto`, a KVM guest whose kernel stays silent restarts it once under TCG; a qemu
        that dies or freezes under the guest (not the image's doing) restarts it once on the same accelerator."""
        emulator_restarts = 0
        while True:
            checks_before = len(result.checks)
            try:
                self._run(info, result)
                return
            except _Ended as end:
                if end.ending == "kvm-silent" and self.fallback is None:
                    self._fall_back_to_tcg(end, result)
                elif end.ending in ("emulator-died", "emulator-frozen") and emulator_restarts < HOST_FAULT_RESTARTS:
                    emulator_restarts += 1
                    self.monitor.note("warning", f"{end.message}; this is the emulator's fault, not the image's: "
                                      "destroyed it and running the boot test again")
                    result.notes.append(f"run twice: the first attempt ended because {end.message}")
                    del result.checks[checks_before:]  # what the dead guest answered is not evidence
                    self._restart_from_nothing(f"{end.message}; this log is the second attempt's")
                else:
                    raise

    def _fall_back_to_tcg(self, end: _Ended, result: BootTestResult) -> None:
        """The KVM guest stayed silent: say so, remember it for this host, and begin again from nothing under TCG."""
        self.fallback = AccelFallback(end.message)
        self.monitor.note("warning", f"{end.message}; destroyed it and restarting the boot test under TCG "
                          "(slower, but it runs)")
        result.notes.append(self.fallback.message())
        probe = self._probe
        key = hypervisor_key(self.conn) if self._conn_ok() else ""
        verdict = record_verdict(key, False, end.message, probe.cache if probe else None) if key else None
        if verdict is not None:
            self.monitor.note("info", f"remembered for this host: later runs use TCG at once (delete "
                              f"{verdict.path} to probe KVM again)")
        h = result.timings.setdefault("harness", {})
        h["kvm-probe"] = round(time.monotonic() - self._t_boot, 3)
        self._restart_from_nothing(f"{self.fallback.message()}; this log is the TCG attempt's")

    def _restart_from_nothing(self, why: str) -> None:
        """The guest and every volume of the attempt go; a fresh console log begins with *why*."""
        self._close_console()
        self._cleanup()
        assert self.creds is not None
        self.console = _Console(self.monitor, self.creds.secrets())
        self.console.parts.append(f"[ccis-workbench] {why}\n")

    def _choose_domain_type(self) -> str:
        """The plan's accelerator on this host: auto reads what libvirt offers and the recorded verdict."""
        o = self.options
        assert self.session is not None and self.session.conn is not None
        if self.fallback is not None:
            self._probe = None
            return "qemu"
        dtype = domain_type(o.accel, kvm_available(self.session.conn) if o.accel == "auto" else False)
        probe = self.kvm_probe if self.kvm_probe is not None and self.kvm_probe.applies(o, dtype) else None
        self._probe = probe
        if probe is not None and dtype == "kvm":
            key = hypervisor_key(self.session.conn)
            known = read_verdict(key, probe.cache) if key else None
            if known is not None and not known.kvm_works:
                self.monitor.note("warning", f"using TCG, not KVM: {known.describe()}")
                self.fallback = AccelFallback(known.reason, source="cached")
                self._probe = None
                return "qemu"
        return dtype

    def _create_volumes(self, plan: BootTestPlan) -> float:
        """The plan's volumes: the uploaded copy of the image (when needed), the overlay, the seed CD-ROM.
        The seed ISO is built in a thread while libvirt makes the other volumes. Returns the seconds spent on
        the seed after those (waiting for it, its volume and its upload)."""
        assert self.session is not None
        seed = plan.volume("seed")
        maker = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed") if seed is not None else None
        try:
            seed_data = maker.submit(build_seed, self.options.seed,
                                     SeedData(plan.instance_id, self.options.hostname, self.creds,
                                              legacy=self.options.rehearsal)) if maker is not None else None
            base_path = ""
            for v in plan.volumes:
                if v.role == "base":
                    assert v.upload is not None
                    self.monitor.note("info", f"uploading {Path(v.upload).name} into pool {self.options.pool} "
                                      f"({v.capacity >> 20} MiB)")
                    vol = self.session.create_volume(v.name, "raw", v.capacity, mode="0600",
                                                     what="the image's copy")
                    self.session.upload(vol, Path(v.upload))
                    base_path = str(vol.path())
                elif v.role == "disk":
                    backing = base_path if v.backing == "{base}" else v.backing
                    self.session.create_volume(v.name, "qcow2", v.capacity, mode="0600", backing=backing,
                                               backing_format=v.backing_format or "raw", what="the test disk",
                                               hint="the libvirt host must be able to read the image")
            t = time.monotonic()
            if seed is not None and seed_data is not None:
                data = seed_data.result()
                vol = self.session.create_volume(seed.name, "raw", len(data), mode="0600", what="the seed")
                self.session.upload(vol, data)
            return time.monotonic() - t
        finally:
            if maker is not None:
                maker.shutdown(wait=True, cancel_futures=True)

    def _run(self, info: ImageInfo, result: BootTestResult) -> None:
        o = self.options
        m = self.monitor
        plan = self.plan
        assert plan is not None
        m.stage("prepare", f"{info.path.name}: overlay disk +{o.grow_mib} MiB, {o.seed} seed")
        h = result.timings.setdefault("harness", {})
        t = time.monotonic()
        if self.session is None:
            self.session = Session(o.uri, o.pool, o.pool_path, m)
        self.session.open()
        dtype = self._choose_domain_type()
        result.domain_type = dtype
        if self.fallback is not None and self.fallback.message() not in result.notes:
            result.notes.append(self.fallback.message())  # chose TCG from the recorded verdict
        self.session.pool  # noqa: B018  (created and started when missing)
        t_seed = self._create_volumes(plan)
        h["volumes"] = round(time.monotonic() - t - t_seed, 3)
        h["seed"] = round(t_seed, 3)
        t = time.monotonic()
        xml = plan.domain_xml(dtype)
        self._check_cancel()
        try:
            self.dom = start_within(self.conn, xml, libvirt.VIR_DOMAIN_START_PAUSED, self.name)
        except EmulatorFrozen as exc:
            raise self._frozen(exc) from None
        except libvirt.libvirtError as exc:
            if died_while_starting(exc):
                raise _Ended("emulator-died", death_while_starting(exc)) from None
            if self._probe is not None:
                raise _Ended("kvm-silent", f"the KVM guest could not start: {exc}") from None
            raise WorkbenchError("The guest did not start", str(exc),
                                 hint="try --accel tcg" if dtype == "kvm" else "") from None
        self._stop_reason, self._stop_event = "", threading.Event()
        with contextlib.suppress(libvirt.libvirtError):
            self._event_id = self.conn.domainEventRegisterAny(self.dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                              self._lifecycle, None)
        h["domain"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        self._attach()
        h["console"] = round(time.monotonic() - t, 3)
        m.stage("boot", f"{self.name} ({'KVM' if dtype == 'kvm' else 'TCG'}); waiting for the login prompt")
        t_boot = self._t_boot = time.monotonic()
        try:
            resume_within(self.dom)
        except EmulatorFrozen as exc:
            raise self._frozen(exc) from None
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
        m.stage("checks", counted(len(selected), "check"))
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

    def _conn_ok(self) -> bool:
        return self.session is not None and self.session.alive()

    def _reconnect(self) -> bool:
        """After libvirtd went away: reconnect within RECONNECT_WINDOW and find the domain again."""
        if self.session is None or not self.session.reconnect(RECONNECT_WINDOW):
            return False
        try:
            self.dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            self.dom = None
        self.monitor.note("warning", "the connection to libvirtd was lost and is back")
        return True

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
        if self.session is None:
            return
        if (self.dom is not None or self.session.volume_names) and not self._conn_ok():
            self._reconnect()
        t = time.monotonic()
        if self._event_id is not None:
            with contextlib.suppress(libvirt.libvirtError, AttributeError):
                self.conn.domainEventDeregisterAny(self._event_id)
            self._event_id = None
        if self.dom is not None:
            # libvirt's destroy of a TCG qemu takes about 1.2 s here (SIGTERM, then its teardown)
            with contextlib.suppress(libvirt.libvirtError):
                self.dom.destroy()
            self.dom = None
        self.destroy_seconds = time.monotonic() - t
        self.session.delete_volumes()

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
                if kind == "no-uefi-boot":
                    raise _Ended("no-uefi-boot", "UEFI found no boot loader on the image (OVMF fell back to its "
                                 "shell): it has no EFI system partition with \\EFI\\BOOT\\BOOTX64.EFI, so it boots "
                                 "with BIOS only (--firmware bios), or its target needs the hybrid BIOS + UEFI layout")
                raise _Ended("crashed", f"the guest failed to boot ({kind}): {line}")
            now = time.monotonic()
            probe = self._probe
            if probe is not None:
                if probe.detector(self.console.text()):
                    self._probe = None
                    self.monitor.note("info", f"the kernel runs under KVM ({now - self._t_boot:.1f} s after the start)")
                elif now - self._t_boot >= probe.window:
                    raise _Ended("kvm-silent", f"the KVM guest printed no output from the running kernel on the "
                                 f"serial console within {probe.window:.0f} s (KVM guests hang on some hosts right "
                                 "after the kernel's real-mode setup)")
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
                    raise self._stopped()
            try:
                if self.console.disconnected:
                    self.console.disconnected = False
                    raise pexpect.EOF("virsh console lost libvirtd")
                return int(self.child.expect(patterns, timeout=min(0.5, max(0.01, end - now))))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                if not self._alive():
                    raise self._stopped() from None
                # the guest runs but virsh console ended (libvirtd restarted): attach again once
                if reattached:
                    raise _Ended("console-lost", "the serial console closed while the guest still runs") from None
                reattached = True
                self._close_console()
                try:
                    self._attach()
                except WorkbenchError:
                    if not self._alive():  # it was going down when the console closed
                        raise self._stopped() from None
                    raise _Ended("console-lost", "the serial console closed and cannot be attached again "
                                 "while the guest still runs") from None

    def _frozen(self, exc: EmulatorFrozen) -> _Ended:
        """qemu stopped answering libvirt as the guest started; under `--accel auto` a KVM guest that froze goes on
        under TCG, as a silent one does."""
        return _Ended("kvm-silent" if self._probe is not None else "emulator-frozen", str(exc))

    def _stopped(self) -> _Ended:
        """How the guest's ending is said: qemu died under it (libvirt's STOPPED event says FAILED), or the guest
        itself crashed or powered off."""
        self._stop_event.wait(1.0)  # the event may trail what isActive() said
        tail = " | ".join(self.console.tail(5)) if self.console else ""
        if self._stop_reason == EMULATOR_DIED:
            return _Ended("emulator-died", f"{emulator_death(self.options.uri, self.name)}; last console lines: "
                          f"{tail}")
        return _Ended("crashed", f"the guest stopped (crashed or powered off); last console lines: {tail}")

    def _lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._stop_reason = stop_reason(detail)
            self._stop_event.set()

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
                  monitor: Monitor | None = None, *, label: str | None = None,
                  on_result: Callable[[BootTestResult], None] | None = None) -> BootTestResult:
    """Boot-test *image* with *checks* (a CheckPlan from core.testspec, or a plain list of Check); *on_result*
    gets the result before the guest is destroyed (see `BootTest`)."""
    return BootTest(image, checks, options, monitor, label=label, on_result=on_result).run()

