"""Check a container image (the docker target's rootfs .tar.xz) without booting it.

The tar is listed first with the real `tar` (readable, no absolute or `..` member names, a /bin/sh to run the
checks with). Then one of two runners runs every check as root with the image's own /bin/sh:

- podman (when installed and able to run a container here): the artifact's Containerfile is built (`FROM
  scratch` + `ADD` of the tar: this proves the Containerfile the build wrote works) or, without one, the tar is
  imported; each check runs in a fresh `podman run --rm --network none` container. Hosts where podman's defaults
  cannot start a container (no CAP_SYS_RESOURCE to raise rlimits, crun on hybrid cgroups) are probed once: lower
  rlimits and runc are tried before giving up on podman, and what was used is written into the report.
- chroot: the tar is unpacked into a private directory; each check runs in a new user namespace (root inside is
  the workbench's own unprivileged uid, or, when the workbench runs as root, a random unprivileged host id: never
  host root) and new mount, PID, UTS, IPC and network namespaces (loopback only); the unpacked root gets /proc
  and a minimal /dev (null, zero, full, random, urandom, tty bound from the host) and becomes the root with
  pivot_root, the host's file systems detached. Device nodes cannot be made, nothing is mounted on the host, so
  removing the directory is safe. If the host cannot make these namespaces, the runner refuses and says why.

`auto` uses podman when it is installed, else the chroot runner; the report's notes say which runner ran and why.
Each check has its timeout; cancel (Monitor.cancelled, Ctrl-C, SIGTERM) stops the running check. The podman
image and containers, or the unpacked directory, are removed before `run` returns, whatever happened.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccis_workbench.core.checkrun import CheckRun
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.plan import new_build_id
from ccis_workbench.core.report import BootTestResult, CheckResult
from ccis_workbench.core.testimage import relative_names, tar_members, tool_message
from ccis_workbench.core.testspec import CheckPlan
from ccis_workbench.core.wording import counted

RUNNERS = ("auto", "podman", "chroot")
NAME_PREFIX = "ccis-boottest-"
#: rlimits given to podman containers when its defaults (raising them) are refused on this host.
LOW_ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
#: The only capabilities a podman check keeps (root's file access inside its own container), and the options
#: every podman container gets; as root, container ids are mapped to PODMAN_ID_COUNT unprivileged host ids.
PODMAN_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SETUID", "SETGID")
PODMAN_HARDENING = ("--cap-drop", "all", "--cap-add", ",".join(PODMAN_CAPS), "--security-opt", "no-new-privileges")
PODMAN_ID_COUNT = 65536
#: The environment a check runs with (the same in both runners).
CHECK_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "TERM": "dumb", "LANG": "C", "CCIS_CONTEXT": "container"}
#: When the workbench runs as root, the chroot runner's processes run as one unprivileged host id from this range
#: (a random one per run, that no local user or group has): root in the checks' user namespace is that id on the
#: host, never host root.
HOST_ID_RANGE = (0x70000000, 0x7FFF0000)
#: The chroot runner's check launcher, run by the workbench's own interpreter (`python -I -S -c`) with the
#: private directory as its working directory. The workbench's side forks a child that makes a user namespace and
#: waits until its uid/gid maps are written (0 inside = *host id* outside, one id); the child becomes root of that
#: namespace (the unprivileged host id: from here on no process is host root), sets no_new_privs and makes new
#: mount/UTS/IPC/network/PID namespaces (mounts private, so nothing reaches the host); its own child, PID 1 of the
#: new PID namespace, makes the unpacked root a mount, gives it /proc and a minimal /dev (tmpfs + bind mounts of the
#: host's harmless character devices), pivots into it and detaches the host's file systems (a chroot can be escaped
#: by root; a detached old root cannot be reached), then execs the image's /bin/sh. Exit 125: set-up failed.
_NSINIT = r"""
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 2, 4, 8, 4096, 16384, 1 << 18, 2
def fail(what):
    sys.stderr.write("ccis-chroot: %s\n" % what)
    sys.stderr.flush()
    os._exit(125)
def check(rc, what):
    if rc != 0:
        fail("%s: %s" % (what, os.strerror(ctypes.get_errno())))
def mount(src, dst, fstype, flags, data=None):
    if os.path.islink(dst):
        fail("/%s is a symbolic link in the image" % dst)
    check(libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None), "mount " + dst)
def status(pid):
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return code if code >= 0 else 128 - code
host_uid, host_gid, pivot_root, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
env = dict(a.split("=", 1) for a in sys.argv[5:])
go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid:
    os.close(go_r)
    os.close(ready_w)
    if os.read(ready_r, 1) != b"u":
        os._exit(status(pid))
    try:
        if os.geteuid() != 0:
            with open("/proc/%d/setgroups" % pid, "w") as f:
                f.write("deny")
        with open("/proc/%d/uid_map" % pid, "w") as f:
            f.write("0 %d 1\n" % host_uid)
        with open("/proc/%d/gid_map" % pid, "w") as f:
            f.write("0 %d 1\n" % host_gid)
    except OSError as exc:
        os.kill(pid, 9)
        status(pid)
        fail("cannot map the user namespace's root to %d: %s" % (host_uid, exc))
    os.write(go_w, b"g")
    os._exit(status(pid))
os.close(go_w)
os.close(ready_r)
libc.prctl(1, 9)
check(libc.unshare(NEWUSER), "a user namespace")
os.write(ready_w, b"u")
if os.read(go_r, 1) != b"g":
    os._exit(125)
try:
    os.setgroups([])
except OSError:
    pass  # setgroups is denied in the namespace of an unprivileged workbench: it has no supplementary groups
os.setresgid(0, 0, 0)
os.setresuid(0, 0, 0)
check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
check(libc.unshare(NEWNS | NEWUTS | NEWIPC | NEWNET | NEWPID), "mount/UTS/IPC/network/PID namespaces")
check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
libc.sethostname(b"ccis-container-test", 19)
init = os.fork()
if init:
    os._exit(status(init))
libc.prctl(1, 9)
mount("root", "root", None, MS_BIND)
os.chdir("root")
for d in ("proc", "dev", "tmp"):
    if os.path.islink(d):
        fail("/%s is a symbolic link in the image" % d)
    os.makedirs(d, exist_ok=True)
mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m")
for n in ("null", "zero", "full", "random", "urandom", "tty"):
    open("dev/" + n, "w").close()
    mount("/dev/" + n, "dev/" + n, None, MS_BIND)
os.symlink("/proc/self/fd", "dev/fd")
if subprocess.run([pivot_root, ".", "."]).returncode != 0:
    fail("pivot_root failed")
check(libc.umount2(b".", MNT_DETACH), "detach the host's file systems")
os.chdir("/")
try:
    os.execve("/bin/sh", ["/bin/sh", "-c", command], env)
except OSError as exc:
    fail("cannot run the image's /bin/sh: %s" % exc)
"""
#: The magic bytes of the compressions a rootfs tar may use, and tar's option to read each from a pipe.
_COMPRESSIONS = ((b"\xfd7zXZ\x00", "-J"), (b"\x1f\x8b", "-z"), (b"BZh", "-j"), (b"\x28\xb5\x2f\xfd", "--zstd"))


@dataclass
class ContainerTestOptions:
    """How to check a container image (CLI options and TUI settings)."""

    runner: str = "auto"  # auto | podman | chroot
    #: podman's OCI runtime (e.g. runc); None: podman's default, then runc if the default cannot run here
    podman_runtime: str | None = None
    #: where the chroot runner unpacks the tar (default: the system's temporary directory)
    workdir: str | None = None
    run_id: str | None = None
    #: the chroot runner, when the workbench runs as root: the unprivileged host uid (and gid) that is root in
    #: the checks' user namespace (None: a random one no local user or group has)
    host_id: int | None = None

    def validate(self) -> None:
        if self.runner not in RUNNERS:
            raise WorkbenchError("Unknown container runner", self.runner, hint=f"choose {', '.join(RUNNERS)}")


@dataclass
class RootfsInfo:
    path: Path
    members: int
    size: int
    has_containerfile: bool


def inspect_rootfs(path: Path) -> RootfsInfo:
    """List the tar with the real `tar`: it must be readable, hold no absolute or `..` names, and have /bin/sh."""
    try:
        if not path.is_file():
            raise WorkbenchError("Rootfs tar not found", "the file does not exist", file=str(path))
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise WorkbenchError("Cannot read the rootfs tar", exc.strerror or str(exc), file=str(path)) from None
    names = tar_members(path, title="Not a readable rootfs tar", hint="give the build's .rootfs.tar.xz artifact")
    if not names:
        raise WorkbenchError("Empty rootfs tar", "the tar holds no files", file=str(path))
    for n in names:
        if n.startswith("/") or ".." in n.split("/"):
            raise WorkbenchError("Unsafe rootfs tar", f"member {n!r} points outside the root file system",
                                 file=str(path), hint="a rootfs tar holds paths relative to / only")
    if not ({"bin/sh", "usr/bin/sh"} & relative_names(names)):
        raise WorkbenchError("No shell in the rootfs", "the tar has no bin/sh or usr/bin/sh: the checks run "
                             "with the image's own shell", file=str(path))
    return RootfsInfo(path.resolve(), len(names), path.stat().st_size,
                      (path.parent / "Containerfile").is_file())


class _Cancelled(Exception):
    pass


def _run_bounded(argv: list[str], timeout: float, monitor: Monitor, *, env: dict[str, str] | None = None,
                 on_kill: Any = None, cwd: str | None = None, stdin: Any = None) -> tuple[int | None, str]:
    """Run *argv* (stdin closed, stderr into stdout) for at most *timeout* s, polling cancel; (status|None, out).

    The process gets its own session; a timeout or cancel kills the whole group (and *on_kill* cleans up what
    lives outside it, e.g. a podman container)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    end = time.monotonic() + timeout
    try:
        while True:
            if monitor.cancelled():
                raise _Cancelled
            try:
                out, _ = proc.communicate(timeout=min(0.5, max(0.01, end - time.monotonic())))
                return proc.returncode, out.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    _kill(proc, on_kill)
                    out, _ = proc.communicate()
                    return None, (out or b"").decode("utf-8", "replace")
    except BaseException:
        _kill(proc, on_kill)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=10)
        raise


def _kill(proc: subprocess.Popen[bytes], on_kill: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if on_kill is not None:
        on_kill()


class _Podman:
    """Checks in podman containers made from the image the tar (or its Containerfile) gives."""

    kind = "podman"

    def __init__(self, podman: str, name: str, monitor: Monitor, runtime: str | None) -> None:
        self.podman = podman
        self.name = name
        self.image = f"localhost/{name}:latest"
        self.monitor = monitor
        self.runtime = runtime
        self.extra: list[str] = []
        self.created = False
        self.description = "podman"
        self.notes: list[str] = []
        self._n = 0
        #: as root, podman runs rootful: the container's ids 0-65535 are mapped to an unprivileged host range
        self.idmap: list[str] = []
        if os.geteuid() == 0:
            base = _free_host_range(*HOST_ID_RANGE, PODMAN_ID_COUNT)
            self.idmap = ["--uidmap", f"0:{base}:{PODMAN_ID_COUNT}", "--gidmap", f"0:{base}:{PODMAN_ID_COUNT}"]

    def _base(self) -> list[str]:
        return [self.podman] + (["--runtime", self.runtime] if self.runtime else [])

    def prepare(self, info: RootfsInfo) -> str:
        if info.has_containerfile:
            argv = [self.podman, "build", "--pull=never", "--network", "none", "-q", "-f",
                    str(info.path.parent / "Containerfile"), "-t", self.image, str(info.path.parent)]
            how = "built from the artifact's Containerfile"
        else:
            argv = [self.podman, "import", "--message", "ccis-workbench boot test", str(info.path), self.image]
            how = "imported from the rootfs tar"
        self.created = True  # from here on, cleanup removes the image whatever happens
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            msg = tool_message(proc.stderr, proc.returncode)
            what = "The Containerfile does not build" if info.has_containerfile else "podman cannot import the tar"
            raise WorkbenchError(what, msg, file=str(info.path.parent / "Containerfile") if info.has_containerfile
                                 else str(info.path))
        self._probe()
        return f"{how} as {self.image} ({self.description})"

    def _probe(self) -> None:
        """Find podman options that start a container on this host (see the module docstring): always without
        network and capabilities beyond PODMAN_CAPS, with no_new_privileges; as root, with the unprivileged id
        mapping if this host allows it (if not, the description says the container's root is host root)."""
        tried: list[str] = []
        runtimes: list[str | None] = [self.runtime]
        if self.runtime is None and shutil.which("runc"):
            runtimes.append("runc")
        idmaps = [self.idmap, []] if self.idmap else [[]]
        for idmap in idmaps:
            for runtime in runtimes:
                for extra in ([], list(LOW_ULIMITS)):
                    self.runtime = runtime
                    argv = [*self._base(), "run", "--rm", "--pull=never", "--network", "none", *PODMAN_HARDENING,
                            *idmap, *extra, "--read-only", self.image, "/bin/sh", "-c", "exit 0"]
                    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
                    if proc.returncode == 0:
                        self.extra = [*idmap, *extra]
                        parts = [f"runtime {runtime}" if runtime else "default runtime",
                                 "no network, capabilities dropped but " + ",".join(PODMAN_CAPS)
                                 + ", no_new_privileges, read-only root unless a check must write"]
                        if idmap:
                            parts.append(f"root inside = unprivileged host ids from {idmap[1].split(':')[1]}")
                        elif os.geteuid() == 0:
                            parts.append("rootful WITHOUT a user namespace mapping (refused here: "
                                         f"{tried[-1] if tried else 'unknown'})")
                        else:
                            parts.append("rootless")
                        if extra:
                            parts.append("rlimits lowered to nofile/nproc 4096 (this host refuses raising them)")
                        self.description = "podman, " + ", ".join(parts)
                        if tried:
                            self.description += f"; not usable here: {'; '.join(tried)}"
                        return
                    err = tool_message(proc.stderr, proc.returncode)
                    tried.append(f"{runtime or 'default runtime'}{' with lower rlimits' if extra else ''}"
                                 f"{' with the id mapping' if idmap else ''}: {err}")
        raise WorkbenchError("podman cannot run containers here", " | ".join(tried),
                             hint="use --container-runner chroot (unshare + chroot), or fix podman's runtime")

    def run(self, command: str, timeout: float) -> tuple[int | None, str]:
        code, out = self._run(command, timeout, read_only=True)
        if code not in (None, 0) and "Read-only file system" in out:
            self.notes.append(f"a check wrote to the root file system and ran again with a writable root: {command}")
            code, out = self._run(command, timeout, read_only=False)
        return code, out

    def _run(self, command: str, timeout: float, *, read_only: bool) -> tuple[int | None, str]:
        self._n += 1
        cname = f"{self.name}-{self._n}"
        env_args = [a for k, v in CHECK_ENV.items() for a in ("--env", f"{k}={v}")]
        argv = [*self._base(), "run", "--rm", "--pull=never", "--name", cname, "--network", "none",
                "--hostname", "ccis-container-test", *PODMAN_HARDENING, *(["--read-only"] if read_only else []),
                *self.extra, *env_args, "--user", "0:0", "--workdir", "/", self.image, "/bin/sh", "-c", command]
        return _run_bounded(argv, timeout, self.monitor, on_kill=lambda: self._remove_container(cname))

    def _remove_container(self, cname: str) -> None:
        subprocess.run([self.podman, "rm", "-f", "-t", "0", cname], capture_output=True, timeout=60, check=False)

    def cleanup(self) -> None:
        if not self.created:
            return
        listing = subprocess.run([self.podman, "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                                 text=True, timeout=60, check=False).stdout.split()
        for cname in listing:
            if cname.startswith(f"{self.name}-"):
                self._remove_container(cname)
        subprocess.run([self.podman, "rmi", "-f", self.image], capture_output=True, timeout=120, check=False)
        self.created = False


def _free_host_range(lo: int, hi: int, count: int) -> int:
    """The first id of *count* ids in [lo, hi), a random multiple of *count*, that no local user or group has."""
    used = _local_ids()
    while True:
        base = lo + secrets.randbelow((hi - lo) // count) * count
        if not any(base <= u < base + count for u in used):
            return base


def _local_ids() -> set[int]:
    """The uids and gids of /etc/passwd and /etc/group."""
    used: set[int] = set()
    for f in ("/etc/passwd", "/etc/group"):
        with contextlib.suppress(OSError):
            for line in Path(f).read_text(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) > 2 and fields[2].isdigit():
                    used.add(int(fields[2]))
    return used


def _python() -> str:
    """An interpreter this process may run for the check launcher (stdlib only): its own, else python3."""
    for c in (sys.executable, getattr(sys, "_base_executable", ""), os.path.realpath(sys.executable),
              shutil.which("python3") or ""):
        if c and os.access(c, os.X_OK):
            return c
    raise WorkbenchError("No Python interpreter to launch the checks", f"{sys.executable} cannot be run",
                         hint="install python3")


def _free_host_id(lo: int, hi: int) -> int:
    """A random id in [lo, hi) that no local user or group has (from /etc/passwd and /etc/group)."""
    used = _local_ids()
    while True:
        n = lo + secrets.randbelow(hi - lo)
        if n not in used:
            return n


class _Chroot:
    """Checks in the unpacked tar, in fresh user/mount/PID/network/IPC/UTS namespaces (see the module docstring).

    Root in the checks is root of a user namespace only: the workbench's own unprivileged uid, or, when the
    workbench runs as root, a random unprivileged host id (*host_id*) that `setpriv` switches to (with
    no_new_privs) before anything of the image runs. The tar is unpacked by that id too, in its own user
    namespace, reading the tar from a file descriptor the workbench opened."""

    kind = "chroot"

    def __init__(self, name: str, monitor: Monitor, workdir: str | None, host_id: int | None = None) -> None:
        self.name = name
        self.monitor = monitor
        self.workdir = workdir
        self.dir: Path | None = None
        self.root: Path | None = None
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self.host_id = host_id if host_id is not None else _free_host_id(*HOST_ID_RANGE)
            if not 0 < self.host_id < 0xFFFFFFFF:
                raise WorkbenchError("Bad host id for the chroot runner", str(self.host_id),
                                     hint="an unprivileged uid, not 0")
        else:
            self.host_id = os.geteuid()
        self.description = (f"chroot runner: user namespace (root inside = unprivileged host uid {self.host_id}), "
                            "new mount/PID/network/IPC/UTS namespaces, pivot_root into the image, minimal /dev, "
                            "no network")

    def _tools(self) -> dict[str, str]:
        tools = {t: shutil.which(t) for t in ("unshare", "setpriv", "pivot_root", "tar")}
        missing = [t for t, p in tools.items() if p is None and (t != "setpriv" or self.as_root)]
        if missing:
            raise WorkbenchError("The chroot runner cannot isolate the checks here",
                                 f"missing: {', '.join(missing)}",
                                 hint="apt-get install util-linux tar (dnf install util-linux tar), or podman")
        return {t: p for t, p in tools.items() if p is not None}

    def _userns(self, *namespaces: str) -> list[str]:
        """argv prefix: the unprivileged id (when root), then unshare with a user namespace mapping it to root."""
        t = self._tools()
        prefix: list[str] = []
        if self.as_root:
            prefix = [t["setpriv"], f"--reuid={self.host_id}", f"--regid={self.host_id}", "--clear-groups",
                      "--no-new-privs"]
        return [*prefix, t["unshare"], "--user", "--map-root-user", *namespaces]

    def _namespaces(self) -> list[str]:
        return self._userns("--fork", "--kill-child", "--pid", "--mount", "--uts", "--ipc", "--net",
                            "--propagation", "private")

    def _probe(self) -> None:
        """Refuse, saying why, when this host cannot give the checks their namespaces."""
        code, out = _run_bounded([*self._namespaces(), "true"], 60, self.monitor, cwd=str(self.dir))
        if code != 0:
            raise WorkbenchError("The chroot runner cannot isolate the checks here",
                                 f"a user namespace with new mount/PID/network namespaces cannot be made: "
                                 f"{tool_message(out, code)}",
                                 hint="allow user namespaces (sysctl user.max_user_namespaces, "
                                 "kernel.unprivileged_userns_clone=1), or use --container-runner podman")

    def prepare(self, info: RootfsInfo) -> str:
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.workdir))
        except OSError as exc:
            raise WorkbenchError("Cannot unpack here", f"no private directory can be made: {exc.strerror or exc}",
                                 file=self.workdir or tempfile.gettempdir(),
                                 hint="give --workdir an existing, writable directory") from None
        self.root = self.dir / "root"
        self.root.mkdir()
        self._probe()
        if self.as_root:
            try:
                for d in (self.dir, self.root):
                    os.chown(d, self.host_id, self.host_id)
            except OSError as exc:
                raise WorkbenchError("The chroot runner cannot isolate the checks here",
                                     f"the unpacked tree cannot be given to host id {self.host_id}: "
                                     f"{exc.strerror or exc}", file=str(self.dir)) from None
        with open(info.path, "rb") as fh:
            magic = fh.read(8)
        flag = [f for m, f in _COMPRESSIONS if magic.startswith(m)]
        argv = [*self._userns(), self._tools()["tar"], *flag, "-xf", "-", "-C", "root", "--no-same-owner",
                "--anchored", "--exclude=./dev/*", "--exclude=dev/*"]
        self.monitor.note("info", f"unpacking {info.path.name} ({info.size >> 20} MiB) into {self.dir}")
        with open(info.path, "rb") as tar:
            code, out = _run_bounded(argv, 1800, self.monitor, cwd=str(self.dir), stdin=tar)
        if code != 0:
            last = tool_message(out, code)
            if "No space left" in out:
                raise WorkbenchError("No space to unpack the rootfs", last, file=str(self.dir),
                                     hint="free space, or give --workdir on a larger file system")
            raise WorkbenchError("Cannot unpack the rootfs tar", last, file=str(info.path))
        return f"unpacked into {self.root} ({self.description})"

    def run(self, command: str, timeout: float) -> tuple[int | None, str]:
        assert self.dir is not None
        env = [f"{k}={v}" for k, v in CHECK_ENV.items()]
        gid = self.host_id if self.as_root else os.getegid()
        argv = [_python(), "-I", "-S", "-c", _NSINIT, str(self.host_id), str(gid), self._tools()["pivot_root"],
                f"cd / && {command}", *env]
        code, out = _run_bounded(argv, timeout, self.monitor, env=dict(CHECK_ENV), cwd=str(self.dir))
        if code == 125 and not out.strip():
            out = "the check's namespaces could not be set up"
        return code, out

    def cleanup(self) -> None:
        if self.dir is None or not self.dir.exists():
            return
        mounted = _mounts_under(self.dir)
        for m in sorted(mounted, key=len, reverse=True):  # never the case (private mount namespace); be safe
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=60, check=False)
        if _mounts_under(self.dir):
            raise WorkbenchError("Cannot remove the unpacked rootfs", f"something is still mounted under {self.dir}",
                                 hint=f"unmount it, then remove {self.dir}")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():  # not root: the image's read-only directories (0555 /proc, /sys) need u+w first
            for d, _dirs, _files in os.walk(self.dir):
                with contextlib.suppress(OSError):
                    os.chmod(d, 0o700)
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def _mounts_under(path: Path) -> list[str]:
    base = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [ln.split()[4].encode().decode("unicode_escape") for ln in lines if len(ln.split()) > 4]
    return [p for p in points if (p + "/").startswith(base)]


def podman_path() -> str | None:
    return shutil.which("podman")


class ContainerTest:
    """One check of one rootfs tar; `run()` returns the result and leaves nothing behind."""

    def __init__(self, rootfs: str | Path, checks: CheckPlan | list[Check],
                 options: ContainerTestOptions | None = None, monitor: Monitor | None = None, *,
                 label: str | None = None) -> None:
        self.rootfs = Path(rootfs)
        self.options = options or ContainerTestOptions()
        self.options.validate()
        self.monitor = monitor or Monitor()
        self.checks = CheckRun(checks, self.monitor)
        self.label = label or self.rootfs.name.split(".")[0]
        self.run_id = self.options.run_id or new_build_id()
        safe = re.sub(r"[^a-z0-9_.-]+", "-", self.label.lower()).strip("-.")[:32] or "image"
        self.name = f"{NAME_PREFIX}{safe}-{self.run_id}".lower()
        self.runner: _Podman | _Chroot | None = None
        self.why = ""
        self.transcript: list[str] = []

    def _choose(self) -> _Podman | _Chroot:
        o = self.options
        podman = podman_path()
        if o.runner == "podman" and podman is None:
            raise WorkbenchError("podman is not installed", "--container-runner podman was asked for",
                                 hint="apt-get install podman, or use --container-runner chroot")
        if o.runner in ("podman", "auto") and podman is not None:
            self.why = "asked for" if o.runner == "podman" else "auto: podman is installed"
            return _Podman(podman, self.name, self.monitor, o.podman_runtime)
        self.why = "asked for" if o.runner == "chroot" else "auto: podman is not installed"
        return _Chroot(self.name, self.monitor, o.workdir, o.host_id)

    def run(self) -> BootTestResult:
        t0 = time.monotonic()
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        result = BootTestResult(run_id=self.run_id, label=self.label, image=str(self.rootfs), started=started,
                                uri="", domain=self.name, domain_type="", seed="none", user="root",
                                context="container")
        h: dict[str, Any] = {}
        result.timings["harness"] = h
        try:
            try:
                self._run(result, h)
                result.ending, result.ending_message = "completed", "every check ran"
            except WorkbenchError as exc:
                if self.runner is not None and self.runner.kind == "podman" and self.options.runner == "auto" \
                        and exc.title == "podman cannot run containers here":
                    # podman is installed but cannot start a container on this host: the chroot runner can
                    self.monitor.note("warning", f"{exc.message}; using the chroot runner instead")
                    result.notes.append(f"podman could not run a container here ({exc.message}); the chroot runner "
                                        "was used")
                    self._cleanup(h)
                    self.runner = _Chroot(self.name, self.monitor, self.options.workdir, self.options.host_id)
                    self.why = "auto: podman cannot run a container here"
                    result.checks.clear()
                    self._run(result, h, choose=False)
                    result.ending, result.ending_message = "completed", "every check ran"
                else:
                    raise
        except WorkbenchError as exc:
            result.ending, result.ending_message = "error", f"{exc.title}: {exc.message}"
            if exc.location is not None:
                result.ending_message += f" ({exc.location})"
            self.monitor.note("error", result.ending_message)
        except (_Cancelled, KeyboardInterrupt):
            result.ending = "cancelled"
            result.ending_message = "cancelled: the running check was stopped and the container image removed"
            self.monitor.note("warning", result.ending_message)
        finally:
            self._cleanup(h)
            result.checks += self.checks.not_run(result.checks, result.ending_message)
            result.total_time = time.monotonic() - t0
            result.console_log = "".join(self.transcript)
        return result

    def _run(self, result: BootTestResult, h: dict[str, Any], *, choose: bool = True) -> None:
        m = self.monitor
        t = time.monotonic()
        m.stage("prepare", f"{self.rootfs.name}: checking the rootfs tar")
        info = inspect_rootfs(self.rootfs)
        h["inspect"] = round(time.monotonic() - t, 3)
        if choose:
            self.runner = self._choose()
        assert self.runner is not None
        if self.monitor.cancelled():
            raise _Cancelled
        t = time.monotonic()
        how = self.runner.prepare(info)
        h["prepare"] = round(time.monotonic() - t, 3)
        result.uri = self.runner.kind
        result.domain_type = self.runner.description
        chosen = f"container runner: {self.runner.kind} ({self.why}): {self.runner.description}"
        result.notes.append(chosen)
        m.note("info", chosen)
        m.note("info", f"{info.path.name}: {info.members} entries; {how}")
        selected = self.checks.selected
        m.stage("checks", f"{counted(len(selected), 'check')}, as root in the container ({self.runner.kind})")
        t_checks = time.monotonic()
        for i, (check, group) in enumerate(selected):
            if m.cancelled():
                raise _Cancelled
            result.checks.append(self._run_check(check, group))
            m.progress(i + 1, len(selected), "checks")
        result.checks_time = time.monotonic() - t_checks
        result.checks += self.checks.skipped_results()
        result.notes += getattr(self.runner, "notes", [])

    def _run_check(self, check: Check, group: str) -> CheckResult:
        assert self.runner is not None
        self.checks.start(check)
        t0 = time.monotonic()
        code, output = self.runner.run(check.command, check.timeout)
        duration = time.monotonic() - t0
        shown = output.replace("\r", "").strip("\n")
        text = f"# {check.id}\n$ {check.command}\n{shown}{chr(10) if shown else ''}[exit {code}]\n"
        self.transcript.append(text)
        self.monitor.output("console", text)
        return self.checks.judge(check, group, code, output, duration)

    def _cleanup(self, h: dict[str, Any]) -> None:
        t = time.monotonic()
        if self.runner is not None:
            try:
                self.runner.cleanup()
            except WorkbenchError as exc:
                self.monitor.note("error", f"{exc.title}: {exc.message}")
        h["cleanup"] = round(time.monotonic() - t, 3)


def run_container_test(rootfs: str | Path, checks: CheckPlan | list[Check],
                       options: ContainerTestOptions | None = None, monitor: Monitor | None = None, *,
                       label: str | None = None) -> BootTestResult:
    """Check the container image *rootfs* (a rootfs tar) with *checks*, without booting anything."""
    return ContainerTest(rootfs, checks, options, monitor, label=label).run()

