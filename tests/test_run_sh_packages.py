"""Every program the code and the tests run is installed by run.sh, on Debian (checked against dpkg: the package
that owns the program on this machine must be in APT_PACKAGES, or be one Debian always installs) and on
CentOS/Fedora (each program's dnf package must be in DNF_PACKAGES).

The programs are collected from the source, not listed by hand: the first element of every argument list given to
subprocess/pexpect calls, every `shutil.which("...")`, and the tools those wrap (virt-xml-validate runs xmllint).
A program added to the code without its package in run.sh fails here, on the machine where it happens to be
installed by hand too.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("ccis_workbench", "tests", "benchmarks", "scripts")
#: Calls whose first argument is an argument list (or, for which, a program name).
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "spawn", "_run", "run_tool", "which"}
#: Programs that run others the code never names.
WRAPPED = {"virt-xml-validate": ["xmllint"], "virt-install": ["qemu-img"], "vagrant": ["bsdtar"]}
#: Names in argument lists that are not programs looked up on PATH.
NOT_PROGRAMS = {"sh"}  # POSIX sh: part of every system (dash on Debian, bash on Fedora)
#: The dnf package of each program (Fedora/CentOS names), for DNF_PACKAGES; None: not packaged there (said why).
DNF = {
    "bash": "bash", "cp": "coreutils", "gpg": "gnupg2", "gpgv": "gnupg2",
    "busybox": "busybox", "chroot": "coreutils", "cloud-init": "cloud-init", "cpio": "cpio",
    "debootstrap": "debootstrap", "debugfs": "e2fsprogs", "python3": "python3",
    "depmod": "kmod", "du": "coreutils", "extlinux": "syslinux-extlinux", "gcc": "gcc", "git": "git",
    "ksvalidator": None,  # pip (pykickstart), in the virtualenv
    "ldd": "glibc-common", "mke2fs": "e2fsprogs", "mount": "util-linux", "podman": "podman", "qemu-img": "qemu-img",
    "qemu-io": "qemu-img", "qemu-system-x86_64": "qemu-kvm", "runc": "runc", "setpriv": "util-linux",
    "sfdisk": "util-linux", "sha256sum": "coreutils", "ssh-keygen": "openssh-clients", "tar": "tar",
    "umount": "util-linux", "unshare": "util-linux", "vagrant": "vagrant", "virsh": "libvirt-client",
    "virt-install": "virt-install", "virt-xml-validate": "libvirt-client", "xorriso": "xorriso", "xmllint": "libxml2",
    "bsdtar": "bsdtar", "mkfs.ext4": "e2fsprogs", "mcopy": "mtools", "mkfs.vfat": "dosfstools", "curl": "curl",
    "tmux": "tmux", "rsvg-convert": "librsvg2-tools", "qemu-nbd": "qemu-img", "virtlogd": "libvirt-daemon",
    "libvirtd": "libvirt-daemon", "dpkg-deb": None,  # the rehearsal tree unpacks Debian's kernel .deb: Debian only
    "apt-get": None, "dpkg-query": None,  # Debian only, by definition
    "gpgconf": "gnupg2", "id": "coreutils", "mtype": "mtools", "pgrep": "procps-ng", "rsync": "rsync",
    "runuser": "util-linux", "ssh": "openssh-clients", "useradd": "shadow-utils", "userdel": "shadow-utils",
}
#: dnf packages that Fedora/CentOS pull in with others listed (run.sh need not name them).
DNF_IMPLIED = {"bash", "coreutils", "util-linux", "glibc-common", "kmod", "tar", "libvirt-daemon", "libvirt-client"}


def run_sh_list(name: str) -> set[str]:
    text = (REPO / "run.sh").read_text()
    m = re.search(rf"^{name}=\((.*?)\)", text, re.S | re.M)
    assert m, f"run.sh has no {name}=(...) list"
    return set(m.group(1).split())


def programs_in_source() -> dict[str, set[str]]:
    """program -> the files that run it."""
    found: dict[str, set[str]] = {}
    for base in SOURCES:
        for f in sorted((REPO / base).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in RUNNERS:
                    continue
                arg = node.args[0]
                if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
                    arg = arg.elts[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and \
                        re.fullmatch(r"[a-z][a-z0-9_.+-]*", arg.value):
                    found.setdefault(arg.value, set()).add(str(f.relative_to(REPO)))
    for prog, inner in WRAPPED.items():
        if prog in found:
            for p in inner:
                found.setdefault(p, set()).add(f"(run by {prog})")
    for p in NOT_PROGRAMS | subcommands():
        found.pop(p, None)
    return found


def subcommands() -> set[str]:
    """The workbench's own commands (tests run `main(["build", ...])`-style helpers named run)."""
    from ccis_workbench.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def test_the_collector_finds_what_the_code_runs() -> None:
    found = programs_in_source()
    for prog in ("qemu-img", "virsh", "git", "podman", "tar", "vagrant", "xmllint", "ssh-keygen"):
        assert prog in found, prog
    assert "qcow2" not in found and "text" not in found  # parametrize values are not programs


def _owner(path: str) -> str | None:
    """The Debian package that owns *path* (trying the /usr-merged and the real path)."""
    first = [path, str(Path(path).resolve())]  # the name run first (gcc is package gcc, its target gcc-12)
    candidates = list(dict.fromkeys(first + [c.removeprefix("/usr") for c in first] +
                                    ["/usr" + c for c in first if not c.startswith("/usr")]))
    for c in candidates:
        out = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def _always_installed(pkg: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}", pkg], capture_output=True,
                         text=True, check=False).stdout.split()
    return bool(out) and (out[0] == "yes" or (len(out) > 1 and out[1] == "required"))


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="the apt check reads dpkg's database (Debian)")
def test_every_program_is_installed_by_run_sh_on_debian() -> None:
    apt = run_sh_list("APT_PACKAGES")
    venv_bin = REPO / ".venv" / "bin"
    problems = []
    for prog, where in sorted(programs_in_source().items()):
        if (venv_bin / prog).exists():  # a pip package's command, installed by run.sh's pip step
            continue
        path = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if path is None:
            problems.append(f"{prog} ({', '.join(sorted(where))}): not installed by ./run.sh setup")
            continue
        owner = _owner(path)
        if owner is None:
            problems.append(f"{prog}: {path} belongs to no Debian package")
        elif owner not in apt and not _always_installed(owner):
            problems.append(f"{prog} ({', '.join(sorted(where))}): its package {owner} is not in run.sh's "
                            "APT_PACKAGES")
    assert not problems, "\n".join(problems)


def test_every_program_has_its_dnf_package_in_run_sh() -> None:
    dnf = run_sh_list("DNF_PACKAGES")
    problems = []
    for prog, where in sorted(programs_in_source().items()):
        if prog not in DNF:
            problems.append(f"{prog} ({', '.join(sorted(where))}): say its dnf package in DNF (this test)")
        elif DNF[prog] is not None and DNF[prog] not in dnf and DNF[prog] not in DNF_IMPLIED:
            problems.append(f"{prog}: dnf package {DNF[prog]} is not in run.sh's DNF_PACKAGES")
    assert not problems, "\n".join(problems)
