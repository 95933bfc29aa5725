"""The baseline-spec lint rules: one function per rule, each with a stable id, a name slug and an explanation.

Rules read the pykickstart handler wherever it holds the information (commands, %packages, services, scripts'
options). Only %post bodies are searched as text, and then through a small shell reader (`PostCommand`) that
knows about `;`/`&&`/pipes, quotes, line continuations, heredocs and the `/mnt/sysimage` prefix of
`%post --nochroot`, so `rm -f /etc/ssh/ssh_host_*` and `cat /dev/null > /etc/machine-id` are recognised
whatever their spelling.

A rule is a generator of `Hit`s (line in the linted text, message, optional origin); the engine in lint.py turns
them into `Finding`s, adds origins and applies waivers. Ids never change once published: retire an id rather
than reuse it.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from pykickstart.constants import (
    FIRSTBOOT_SKIP,
    KS_MISSING_IGNORE,
    KS_REBOOT,
    KS_SCRIPT_POST,
    KS_SHUTDOWN,
    KS_WAIT,
    SELINUX_DISABLED,
    SELINUX_PERMISSIVE,
)

from ccis_workbench.core.ksparse import KsMessage
from ccis_workbench.core.model import BACKEND_FINAL_COMMAND, Origin, expand_arch

SEVERITIES = ("error", "warning", "info")


@dataclass
class Rule:
    """One lint rule: stable id ("CCIS101"), name slug ("root-locked"), severity, title, why it matters."""

    id: str
    name: str
    severity: str
    title: str
    explanation: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "severity": self.severity, "title": self.title,
                "explanation": self.explanation}


@dataclass
class Hit:
    """What a rule found: 1-based line in the linted text (0: the whole file) and a message.

    `origin` is set when the line is 0 but a catalog file is to blame (the target's YAML for an agent problem).
    """

    line: int
    message: str
    origin: Origin | None = None


Check = Callable[["LintContext"], Iterator[Hit]]

#: Every rule by id, in the order they are documented.
RULES: dict[str, Rule] = {}
#: (rule, check) for the rules that inspect the kickstart; KS00x and CCIS001 are produced by the engine.
CHECKS: list[tuple[Rule, Check]] = []


def _rule(id: str, name: str, severity: str, title: str, explanation: str) -> Rule:
    assert severity in SEVERITIES, severity
    assert id not in RULES, id
    r = Rule(id, name, severity, title, " ".join(explanation.split()))
    RULES[id] = r
    return r


def rule(id: str, name: str, severity: str, title: str, explanation: str) -> Callable[[Check], Check]:
    """Register a check function under a new rule."""
    r = _rule(id, name, severity, title, explanation)

    def deco(fn: Check) -> Check:
        CHECKS.append((r, fn))
        return fn

    return deco


# -- rules the engine produces itself --------------------------------------------------------------------------

_rule("KS001", "kickstart-error", "error", "pykickstart refuses the kickstart",
      """pykickstart (the parser anaconda itself uses) reports an error for this release: the installer would stop
      on this line. Fix the syntax for the release's handler (ksvalidator -v VERSION shows the same error).""")
_rule("KS002", "deprecated", "warning", "Deprecated kickstart syntax",
      """pykickstart marks this command or option deprecated for the release: it is ignored today and will be
      removed in a later release (e.g. auth/authconfig -> authselect, timezone --ntpservers -> timesource).""")
_rule("KS003", "parse-warning", "warning", "pykickstart parse warning",
      """pykickstart warned while parsing (an unknown section, a duplicate or suspicious construct).""")
_rule("KS004", "version-mismatch", "warning", "#version line differs from the release linted",
      """The kickstart's '#version=' line names another pykickstart handler than the one it is linted (and
      would be installed) with; syntax valid for one release can be refused or ignored by another.""")
_rule("CCIS001", "unknown-waiver", "warning", "Waiver for an unknown rule",
      """A target, overlay or profile waives a rule id or name that does not exist, so it waives nothing. Use
      an id or name from the rule table (ccis_workbench.core.lint.RULES).""")


# -- the context every check reads ------------------------------------------------------------------------------

_SYSROOT = re.compile(r"^(?:/mnt/sysimage|/mnt/sysroot|\$\{?(?:INSTALL_ROOT|ANA_INSTALL_PATH|SYSROOT)\}?)(?=/)")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}
#: Commands whose output, redirected with '>', leaves an empty file (or systemd's "uninitialized" marker).
_EMPTY_PRODUCERS: tuple[list[str], ...] = (
    [], [":"], ["true"], ["cat", "/dev/null"], ["echo", "-n"], ["echo", "-n", ""], ["printf", ""],
    ["echo", "uninitialized"], ["echo", "-n", "uninitialized"])
CLOUD_INIT_UNITS = ("cloud-init", "cloud-init-local", "cloud-config", "cloud-final", "cloud-init-main")


@dataclass
class PostLine:
    """One line of a %post body: its number in the linted text, text, script and whether it is heredoc data."""

    number: int
    text: str
    script: Any
    heredoc: bool = False

    @property
    def is_comment(self) -> bool:
        return self.text.lstrip().startswith("#")


@dataclass
class PostCommand:
    """One simple shell command of a %post body: argv (quotes removed), truncating redirect targets."""

    line: int
    argv: list[str]
    redirects: list[str] = field(default_factory=list)
    script: Any = None

    @property
    def prog(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else ""


def strip_sysroot(path: str) -> str:
    """'/mnt/sysimage/etc/x' (a --nochroot path) -> '/etc/x'."""
    return _SYSROOT.sub("", path)


def _tokens(text: str) -> list[str]:
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        return list(lex)
    except ValueError:  # unbalanced quotes (a multi-line string): fall back to words
        return text.split()


def _commands(line: int, text: str, script: Any) -> list[PostCommand]:
    out: list[PostCommand] = []
    cur = PostCommand(line, [], [], script)
    toks = _tokens(text)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in _SEPARATORS:
            if cur.argv or cur.redirects:
                out.append(cur)
            cur = PostCommand(line, [], [], script)
        elif t in (">", ">|", "&>"):
            if i + 1 < len(toks):
                if cur.argv and cur.argv[-1].isdigit():  # 2>/dev/null: not the command's output
                    cur.argv.pop()
                else:
                    cur.redirects.append(strip_sysroot(toks[i + 1]))
                i += 1
        elif t in (">>", "<", "<<", "<<-", "<<<", ">&", "<&"):
            i += 1  # skip the operand
        else:
            cur.argv.append(t)
        i += 1
    if cur.argv or cur.redirects:
        out.append(cur)
    for c in out:  # chroot /mnt/sysimage CMD ... -> CMD ...
        if c.prog == "chroot" and len(c.argv) > 2:
            c.argv = c.argv[2:]
    return out


_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand_variables(commands: list[PostCommand]) -> list[PostCommand]:
    """Substitute plain `NAME=value` assignments into later commands ('rpm -Uvh "$rpm_file"'), per script.

    Only literal values are tracked (no command substitution); an unknown variable stays as written.
    """
    env: dict[str, str] = {}
    script = None

    def sub(arg: str) -> str:
        return _VAR.sub(lambda v: env.get(v.group(1) or v.group(2), v.group(0)), arg)

    for c in commands:
        if c.script is not script:
            env.clear()
            script = c.script
        if c.argv and all(_ASSIGN.match(a) for a in c.argv):
            for a in c.argv:
                m = _ASSIGN.match(a)
                if m and "$(" not in m.group(2) and "`" not in m.group(2):
                    env[m.group(1)] = sub(m.group(2))
            continue
        c.argv = [sub(a) for a in c.argv]
        c.redirects = [strip_sysroot(sub(r)) for r in c.redirects]
    return commands


def _pkg_matches(name: str, arg: str) -> bool:
    """Does a package argument (name, glob, file name or URL of an rpm) stand for package *name*?"""
    a = arg.rsplit("/", 1)[-1]
    if a.endswith(".rpm"):
        a = a[:-4]
        m = re.match(r"^(.+?)-\d", a)
        a = m.group(1) if m else a
    return a == name or fnmatch.fnmatchcase(name, a)


@dataclass
class LintContext:
    """What the checks read: the parsed handler for the linted text plus what is known about the build."""

    text: str
    version: str
    handler: Any
    problems: list[KsMessage]
    backend: str | None = None
    target: Any = None  # model.Target
    agent: str | None = None  # the first-boot agent (the target's, or an overlay's replacement)
    agent_origin: Origin | None = None  # the YAML that chose the agent
    release: Any = None  # model.Release (compositions only)
    arch: str | None = None

    # -- %post bodies -----------------------------------------------------------------------------------------

    @cached_property
    def posts(self) -> list[Any]:
        return [s for s in self.handler.scripts if s.type == KS_SCRIPT_POST]

    @cached_property
    def post_lines(self) -> list[PostLine]:
        out: list[PostLine] = []
        for s in self.posts:
            end: str | None = None
            for i, text in enumerate(s.script.split("\n")):
                number = (s.lineno or 0) + 1 + i if s.lineno else 0
                if end is not None:
                    out.append(PostLine(number, text, s, heredoc=True))
                    if text.strip() == end:
                        end = None
                    continue
                out.append(PostLine(number, text, s))
                m = _HEREDOC.search(text)
                if m and not text.lstrip().startswith("#"):
                    end = m.group(2)
        return out

    @cached_property
    def commands(self) -> list[PostCommand]:
        """The %post bodies as simple commands, continuation lines joined, heredoc data left out."""
        out: list[PostCommand] = []
        pending: tuple[int, str, Any] | None = None
        for pl in self.post_lines:
            if pl.heredoc or (pending is None and pl.is_comment):
                continue
            if pending is not None:
                start, text, script = pending
                text = text + " " + pl.text
            else:
                start, text, script = pl.number, pl.text, pl.script
            if text.endswith("\\"):
                pending = (start, text[:-1], script)
                continue
            pending = None
            out.extend(_commands(start, text, script))
        if pending is not None:
            out.extend(_commands(pending[0], pending[1], pending[2]))
        return _expand_variables(out)

    def post_search(self, pattern: str, flags: int = 0) -> PostLine | None:
        """The first %post line (heredoc data included, comments not) that matches *pattern*."""
        rx = re.compile(pattern, flags)
        return next((pl for pl in self.post_lines if not pl.is_comment and rx.search(pl.text)), None)

    def deleted(self, path: str) -> PostCommand | None:
        """The first command that deletes *path* (rm with a matching argument or glob, find ... -delete)."""
        for c in self.commands:
            if c.prog == "rm":
                if any(fnmatch.fnmatchcase(path, strip_sysroot(a)) for a in c.argv[1:] if not a.startswith("-")):
                    return c
            elif c.prog == "find" and len(c.argv) > 1 and ("-delete" in c.argv or "rm" in c.argv):
                base = strip_sysroot(c.argv[1]).rstrip("/")
                names = [c.argv[i + 1] for i, a in enumerate(c.argv[:-1]) if a in ("-name", "-iname")]
                if any(fnmatch.fnmatchcase(path, f"{base}/{n}") or fnmatch.fnmatchcase(path, f"{base}/*/{n}")
                       for n in names or ["*"]):
                    return c
        return None

    def emptied(self, path: str) -> PostCommand | None:
        """The first command that leaves *path* an empty file (truncate -s 0, > path, cp /dev/null path)."""
        for c in self.commands:
            args = [strip_sysroot(a) for a in c.argv[1:]]
            if c.prog == "truncate" and path in args:
                joined = " ".join(c.argv[1:])
                if re.search(r"(?:^|\s)(?:-s\s*0|--size[= ]0)(?:\s|$)", joined) or "-s0" in c.argv:
                    return c
            elif c.prog == "cp" and "/dev/null" in c.argv and args and args[-1] == path:
                return c
            elif path in c.redirects and c.argv in _EMPTY_PRODUCERS:
                return c
        return None

    def post_package_op(self, name: str, ops: tuple[str, ...]) -> PostCommand | None:
        """The first dnf/yum/rpm command in %post doing one of *ops* ('install'/'remove') on package *name*."""
        for c in self.commands:
            if c.prog in ("dnf", "yum", "microdnf", "dnf-3"):
                verbs = {"install": ("install", "reinstall", "localinstall"), "remove": ("remove", "erase")}
                idx = next((i for i, a in enumerate(c.argv) if any(a in verbs[o] for o in ops)), None)
                if idx is not None and any(_pkg_matches(name, a) for a in c.argv[idx + 1:] if not a.startswith("-")):
                    return c
            elif c.prog == "rpm":
                opts = [a for a in c.argv[1:] if a.startswith("-")]
                want = set()
                for o in opts:
                    if o in ("--install", "--upgrade") or (not o.startswith("--") and set(o[1:]) & {"i", "U"}):
                        want.add("install")
                    if o == "--erase" or (not o.startswith("--") and "e" in o[1:]):
                        want.add("remove")
                if want & set(ops) and any(_pkg_matches(name, a) for a in c.argv[1:] if not a.startswith("-")):
                    return c
        return None

    # -- %packages --------------------------------------------------------------------------------------------

    @cached_property
    def package_lines(self) -> dict[str, int]:
        """'%packages' entry (as written, e.g. 'cloud-init', '-*-firmware', '@core') -> its line."""
        out: dict[str, int] = {}
        inside = False
        for n, raw in enumerate(self.text.split("\n"), start=1):
            t = raw.strip()
            if not inside:
                if t.startswith("%packages"):
                    inside = True
                    out.setdefault("%packages", n)
                continue
            if t.startswith("%end") or (t.startswith("%") and not t.startswith("%%")):
                inside = False
            elif t and not t.startswith("#"):
                out.setdefault(t.split()[0], n)
        return out

    def packages_line(self) -> int:
        return self.package_lines.get("%packages", 0)

    def included(self, name: str) -> int | None:
        """Line of the %packages entry that installs *name* (0 when the line is unknown), None if none does."""
        pk = self.handler.packages
        for entry in pk.packageList:
            if entry == name or fnmatch.fnmatchcase(name, entry):
                return self.package_lines.get(entry, self.packages_line())
        return None

    def excluded(self, name: str) -> int | None:
        """Line of the %packages exclusion ('-name' or a glob) that covers *name*, None if none does."""
        pk = self.handler.packages
        for entry in pk.excludedList:
            if entry == name or fnmatch.fnmatchcase(name, entry):
                return self.package_lines.get("-" + entry, self.packages_line())
        return None

    def installed(self, name: str) -> int | None:
        """Where package *name* is installed (%packages or a %post dnf/rpm install), unless it is removed again.

        Returns the line (0 if unknown) or None when the package does not end up in the image.
        """
        if self.removed(name) is not None:
            return None
        line = self.included(name)
        if line is not None:
            return line
        c = self.post_package_op(name, ("install",))
        return c.line if c else None

    def removed(self, name: str) -> int | None:
        """Where *name* is kept out: a %packages exclusion or a %post dnf remove / rpm -e."""
        line = self.excluded(name)
        if line is not None and self.included(name) is None:
            return line
        c = self.post_package_op(name, ("remove",))
        return c.line if c else None

    # -- shapes of image --------------------------------------------------------------------------------------

    @cached_property
    def container(self) -> bool:
        """A container rootfs (no bootloader, no kernel): VM-only rules do not apply."""
        if getattr(self.handler.bootloader, "disabled", False):
            return True
        formats = list(getattr(self.target, "formats", None) or [])
        return bool(formats) and all(f == "rootfs-tar" for f in formats)

    @cached_property
    def kernel_args(self) -> list[str]:
        return (self.handler.bootloader.appendLine or "").split()

    def line_of(self, obj: Any) -> int:
        return int(getattr(obj, "lineno", 0) or 0) if getattr(obj, "seen", True) else 0

    def target_hit(self, message: str, line: int = 0) -> Hit:
        return Hit(line, message, None if line else self.agent_origin)


# -- root and passwords ----------------------------------------------------------------------------------------

_HASH = re.compile(r"^(\$(1|2[abxy]?|5|6|7|y|gy|sha1|md5)\$\S+|[./0-9A-Za-z]{13})$")


def looks_like_hash(value: str) -> bool:
    """True when a --iscrypted value is a usable crypt(3) hash (not a lock marker like '!!' or 'locked')."""
    return bool(_HASH.match(value or ""))


def _root_locked_in_post(ctx: LintContext) -> PostCommand | None:
    for c in ctx.commands:
        a = c.argv
        if c.prog == "passwd" and "root" in a and any(o in ("-l", "--lock") for o in a):
            return c
        if c.prog == "usermod" and "root" in a and any(o in ("-L", "--lock") for o in a):
            return c
    return None


@rule("CCIS101", "root-locked", "error", "Root account locked",
      """Every SIG image ships with root locked: no password anyone could know, logins only through the key the
      first-boot agent installs. Use 'rootpw --lock' (or 'rootpw --iscrypted --lock locked', a value that is not
      a hash) and/or 'passwd -l root' in %post.""")
def _root_locked(ctx: LintContext) -> Iterator[Hit]:
    rp = ctx.handler.rootpw
    if _root_locked_in_post(ctx):
        return
    if not rp.seen:
        yield Hit(0, "root is never locked: no rootpw command and no 'passwd -l root' in %post")
    elif not rp.lock and (not rp.isCrypted or looks_like_hash(rp.password)):
        kind = "a crypted password hash" if rp.isCrypted else "a plaintext password"
        yield Hit(rp.lineno, f"rootpw sets {kind} and root is not locked (add --lock, or 'passwd -l root' in %post)")


@rule("CCIS102", "plaintext-password", "error", "No plaintext password",
      """Kickstarts are published next to the images: a plaintext password in rootpw, user or sshpw is a
      password everyone knows. Use --iscrypted with a hash, or --lock, or no password at all.""")
def _plaintext(ctx: LintContext) -> Iterator[Hit]:
    rp = ctx.handler.rootpw
    if rp.seen and rp.password and not rp.isCrypted:
        yield Hit(rp.lineno, "rootpw has a plaintext password")
    for u in ctx.handler.user.userList:
        if u.password and not u.isCrypted:
            yield Hit(u.lineno, f"user {u.name} has a plaintext password")
    sshpw = getattr(ctx.handler, "sshpw", None)
    for u in getattr(sshpw, "sshUserList", []) or []:
        if u.password and not u.isCrypted:
            yield Hit(u.lineno, f"sshpw for {u.username} has a plaintext password")


@rule("CCIS103", "password-in-post", "warning", "Password set in %post",
      """A %post that sets a password (chpasswd, passwd --stdin, usermod -p) bakes a known credential into
      every instance. Let the first-boot agent set credentials; waive it for a target whose well-known password
      is the point (Vagrant).""")
def _password_in_post(ctx: LintContext) -> Iterator[Hit]:
    for c in ctx.commands:
        if c.prog == "chpasswd" or (c.prog == "passwd" and "--stdin" in c.argv) or \
                (c.prog == "usermod" and any(a in ("-p", "--password") for a in c.argv)):
            yield Hit(c.line, f"%post sets a password with {c.prog}")


@rule("CCIS104", "ssh-root-login", "warning", "No root login over SSH",
      """Images keep sshd's default of no password login for root; cloud-init's disable_root stays on.
      'PermitRootLogin yes' or 'disable_root: false' written by %post opens root to the network.""")
def _ssh_root(ctx: LintContext) -> Iterator[Hit]:
    pl = ctx.post_search(r"^\s*[^#]*\bPermitRootLogin\s+yes\b")
    if pl:
        yield Hit(pl.number, "%post enables PermitRootLogin yes")
    pl = ctx.post_search(r"^\s*disable_root:\s*(0|false|False)\b")
    if pl:
        yield Hit(pl.number, "%post sets cloud-init disable_root: false")


# -- SELinux ---------------------------------------------------------------------------------------------------

def _selinux_state(ctx: LintContext) -> tuple[str, int]:
    h = ctx.handler
    if "selinux=0" in ctx.kernel_args:
        return "disabled", ctx.line_of(h.bootloader)
    if h.selinux.seen and h.selinux.selinux == SELINUX_DISABLED:
        return "disabled", h.selinux.lineno
    pl = ctx.post_search(r"\bSELINUX=disabled\b")
    if pl:
        return "disabled", pl.number
    if "enforcing=0" in ctx.kernel_args:
        return "permissive", ctx.line_of(h.bootloader)
    if h.selinux.seen and h.selinux.selinux == SELINUX_PERMISSIVE:
        return "permissive", h.selinux.lineno
    pl = ctx.post_search(r"\bSELINUX=permissive\b")
    if pl:
        return "permissive", pl.number
    return "enforcing", ctx.line_of(h.selinux)


@rule("CCIS110", "selinux-disabled", "error", "SELinux not disabled",
      """The SIG baseline runs SELinux enforcing. 'selinux --disabled', 'selinux=0' on the kernel line or
      SELINUX=disabled written in %post turn it off and leave files unlabelled, which makes enabling it later a
      full relabel.""")
def _selinux_disabled(ctx: LintContext) -> Iterator[Hit]:
    state, line = _selinux_state(ctx)
    if state == "disabled":
        yield Hit(line, "SELinux is disabled; the baseline wants selinux --enforcing")


@rule("CCIS111", "selinux-permissive", "warning", "SELinux enforcing, not permissive",
      """Permissive mode keeps labels but enforces nothing. Ship enforcing; debug images can waive this.""")
def _selinux_permissive(ctx: LintContext) -> Iterator[Hit]:
    state, line = _selinux_state(ctx)
    if state == "permissive":
        yield Hit(line, "SELinux is permissive; the baseline wants selinux --enforcing")


# -- console ---------------------------------------------------------------------------------------------------

_SERIAL = re.compile(r"^console=(ttyS\d+|ttyAMA\d+|hvc\d+|ttysclp\d+|3270)")


@rule("CCIS120", "serial-console", "warning", "Serial console on the kernel line",
      """Clouds show the first serial port as the instance console (and the boot test reads it): put
      console=ttyS0,115200n8 in bootloader --append (ttyAMA0 on aarch64). Editing grub.cfg in %post is lost on
      the next kernel update. Not checked for containers (bootloader --disabled).""")
def _serial(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container or ctx.arch == "s390x":
        return
    if any(_SERIAL.match(a) for a in ctx.kernel_args):
        return
    boot = ctx.handler.bootloader
    extra = " (%post edits it into grub.cfg: that does not survive a kernel update)" \
        if ctx.post_search(r"console=ttyS") else ""
    yield Hit(ctx.line_of(boot), f"no serial console (console=ttyS0,115200n8) in bootloader --append{extra}")


# -- first-boot agent ------------------------------------------------------------------------------------------

def _cloud_init_disabled(ctx: LintContext) -> Hit | None:
    svc = ctx.handler.services
    for s in svc.disabled:
        if s.removesuffix(".service") in CLOUD_INIT_UNITS:
            return Hit(svc.lineno, f"services --disabled turns off {s}")
    for c in ctx.commands:
        if c.prog == "systemctl" and any(v in c.argv for v in ("disable", "mask")) and \
                any(a.removesuffix(".service") in CLOUD_INIT_UNITS for a in c.argv):
            return Hit(c.line, "%post disables cloud-init with systemctl")
        if c.prog == "touch" and any(strip_sysroot(a) == "/etc/cloud/cloud-init.disabled" for a in c.argv):
            return Hit(c.line, "%post creates /etc/cloud/cloud-init.disabled")
    if "cloud-init=disabled" in ctx.kernel_args:
        return Hit(ctx.line_of(ctx.handler.bootloader), "cloud-init=disabled on the kernel line")
    return None


_GOOGLE = ("google-guest-agent", "google-compute-engine", "google-compute-engine-oslogin")


def _datasource_lists(ctx: LintContext) -> list[tuple[int, set[str]]]:
    out = []
    for pl in ctx.post_lines:
        m = re.search(r"datasource_list:\s*\[([^\]]*)\]", pl.text)
        if m and not pl.is_comment:
            out.append((pl.number, {x.strip().strip("'\"") for x in m.group(1).split(",") if x.strip()}))
    return out


@rule("CCIS130", "first-boot-agent", "error", "First-boot agent matches the target",
      """Each target names the agent that configures an instance on first boot: cloud-init (package present and
      its services not disabled), one-context (present, cloud-init absent or removed), the Google guest
      environment (present, cloud-init absent), or none (no cloud-init unless its datasource_list is limited to
      NoCloud/None). An image without its agent boots but nobody can log in.""")
def _agent(ctx: LintContext) -> Iterator[Hit]:
    agent = ctx.agent
    if agent is None:
        return
    ci = ctx.installed("cloud-init")
    if agent == "cloud-init":
        if ci is None:
            yield ctx.target_hit("the target's agent is cloud-init but the cloud-init package is not installed",
                                 ctx.removed("cloud-init") or 0)
        else:
            off = _cloud_init_disabled(ctx)
            if off:
                yield Hit(off.line, f"the target's agent is cloud-init but {off.message}")
    elif agent == "one-context":
        oc = ctx.installed("one-context")
        if oc is None:
            yield ctx.target_hit("the target's agent is one-context but one-context is not installed "
                                 "(in %packages or a %post rpm/dnf install)")
        if ci is not None and oc is None:  # both present: CCIS131 says it
            yield Hit(ci, "cloud-init is installed on a one-context target: exclude it (-cloud-init)")
    elif agent == "google-guest-agent":
        if not any(ctx.installed(p) is not None for p in _GOOGLE):
            yield ctx.target_hit("the target's agent is the Google guest environment but none of "
                                 f"{', '.join(_GOOGLE)} is installed")
        if ci is not None:
            yield Hit(ci, "cloud-init is installed on a Google guest-agent target: exclude it (-cloud-init)")
    elif agent == "none" and ci is not None:
        limited = [n for n, ds in _datasource_lists(ctx) if ds and ds <= {"NoCloud", "None"}]
        if not limited and _cloud_init_disabled(ctx) is None:
            yield Hit(ci, "cloud-init is installed on a target without a first-boot agent: remove it or set "
                          "datasource_list: [NoCloud, None]")


@rule("CCIS131", "agent-conflict", "error", "cloud-init and one-context not together",
      """one-context replaces cloud-init (its package conflicts with it); with both installed two agents fight
      over the network, the hostname and the keys on first boot. Pick one.""")
def _agent_conflict(ctx: LintContext) -> Iterator[Hit]:
    ci = ctx.installed("cloud-init")
    oc = ctx.installed("one-context")
    if ci is not None and oc is not None:
        yield Hit(max(ci, oc), "both cloud-init and one-context are installed")


@rule("CCIS132", "growpart", "warning", "growpart before resizefs",
      """A cloud-init image is built small and must grow its root partition to the instance's disk on first
      boot: cloud-utils-growpart must be installed, growpart not switched off, and the growpart module must run
      before resizefs.""")
def _growpart(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container:
        return
    uses_ci = ctx.agent == "cloud-init" or (ctx.agent is None and ctx.installed("cloud-init") is not None)
    if not uses_ci:
        return
    if ctx.installed("cloud-utils-growpart") is None:
        yield ctx.target_hit("cloud-utils-growpart is not installed: the root filesystem will not grow",
                             ctx.removed("cloud-utils-growpart") or 0)
    pl = ctx.post_search(r"^\s*mode:\s*['\"]?(off|false|disabled)\b")
    if pl and ctx.post_search(r"^\s*growpart:"):
        yield Hit(pl.number, "cloud-init growpart is switched off")
    order = [(pl.number, m.group(1)) for pl in ctx.post_lines
             if (m := re.match(r"^\s*-\s*['\"]?(growpart|resizefs)['\"]?\s*$", pl.text))]
    firsts = {name: n for n, name in reversed(order)}
    if "growpart" in firsts and "resizefs" in firsts and firsts["resizefs"] < firsts["growpart"]:
        yield Hit(firsts["resizefs"], "resizefs is listed before growpart in cloud_init_modules")


# -- the seal --------------------------------------------------------------------------------------------------

def _seal_machine_id(ctx: LintContext) -> tuple[int | None, str | None]:
    """(line where machine-id is sealed, problem) — problem when it is deleted rather than emptied."""
    c = ctx.emptied("/etc/machine-id")
    if c:
        return c.line, None
    rm = ctx.deleted("/etc/machine-id")
    if rm:
        touch = next((t for t in ctx.commands if t.prog == "touch" and
                      "/etc/machine-id" in [strip_sysroot(a) for a in t.argv]), None)
        if touch or ctx.container:
            return (touch or rm).line, None
        return rm.line, "/etc/machine-id is deleted, not emptied: keep an empty file (truncate -s 0) so " \
                        "systemd treats the first boot as first boot on a read-only /etc too"
    return None, None


SEAL_STEPS: dict[str, Callable[[LintContext], int | None]] = {}


def _seal(id: str, name: str, severity: str, title: str, explanation: str, missing: str,
          finder: Callable[[LintContext], int | None], *, vm_only: bool = False) -> None:
    """Register one seal step: *finder* returns the line where %post does it, None when it does not."""
    SEAL_STEPS[id] = finder

    @rule(id, name, severity, title, explanation)
    def check(ctx: LintContext) -> Iterator[Hit]:
        if vm_only and ctx.container:
            return
        if finder(ctx) is None:
            yield Hit(0, missing)


@rule("CCIS140", "seal-machine-id", "error", "Seal: machine-id emptied",
      """Every instance needs its own /etc/machine-id (journald, DHCP client ids, systemd units derive from
      it). %post must empty the file but keep it: 'truncate -s 0 /etc/machine-id' (or '> /etc/machine-id').""")
def _seal_mid(ctx: LintContext) -> Iterator[Hit]:
    line, problem = _seal_machine_id(ctx)
    if line is None:
        yield Hit(0, "%post never empties /etc/machine-id: every instance would share the build's id")
    elif problem:
        yield Hit(line, problem)


SEAL_STEPS["CCIS140"] = lambda ctx: _seal_machine_id(ctx)[0]

_seal("CCIS141", "seal-ssh-host-keys", "warning", "Seal: SSH host keys removed",
      """Host keys made at build time would be shared by every instance (one key to impersonate them all).
      %post removes them ('rm -f /etc/ssh/ssh_host_*'); sshd-keygen makes fresh ones on first boot.""",
      "%post never removes /etc/ssh/ssh_host_* keys",
      lambda ctx: (c.line if (c := ctx.deleted("/etc/ssh/ssh_host_rsa_key") or
                              ctx.deleted("/etc/ssh/ssh_host_ed25519_key")) else None), vm_only=True)
_seal("CCIS142", "seal-random-seed", "warning", "Seal: random seed removed",
      """A saved /var/lib/systemd/random-seed is the same in every instance; remove it so each instance seeds
      its own entropy.""",
      "%post never removes /var/lib/systemd/random-seed",
      lambda ctx: (c.line if (c := ctx.deleted("/var/lib/systemd/random-seed")) else None))
_seal("CCIS143", "seal-udev-rules", "warning", "Seal: persistent udev rules removed",
      """/etc/udev/rules.d/70-persistent-*.rules pin device names to the build machine's MAC addresses; remove
      them ('rm -f /etc/udev/rules.d/70*') so the instance's NIC is eth0.""",
      "%post never removes /etc/udev/rules.d/70* rules",
      lambda ctx: (c.line if (c := ctx.deleted("/etc/udev/rules.d/70-persistent-net.rules")) else None),
      vm_only=True)
_seal("CCIS144", "seal-resolv-conf", "warning", "Seal: resolv.conf truncated",
      """Anaconda copies the build network's resolver into /etc/resolv.conf; an instance must start with an
      empty one ('truncate -s 0 /etc/resolv.conf') and get its own from DHCP.""",
      "%post never truncates /etc/resolv.conf",
      lambda ctx: (c.line if (c := ctx.emptied("/etc/resolv.conf") or ctx.deleted("/etc/resolv.conf")) else None),
      vm_only=True)
_seal("CCIS145", "seal-anaconda-ks", "warning", "Seal: installer kickstart removed",
      """/root/anaconda-ks.cfg (and original-ks.cfg) record the build's kickstart, hashes included; remove them
      with the installer logs.""",
      "%post never removes /root/anaconda-ks.cfg",
      lambda ctx: (c.line if (c := ctx.deleted("/root/anaconda-ks.cfg")) else None))


def _kdump_off(ctx: LintContext) -> int | None:
    svc = ctx.handler.services
    if any(s.removesuffix(".service") == "kdump" for s in svc.disabled):
        return svc.lineno
    for c in ctx.commands:
        if c.prog == "systemctl" and any(v in c.argv for v in ("disable", "mask")) and \
                any(a.removesuffix(".service") == "kdump" for a in c.argv):
            return c.line
    line = ctx.removed("kexec-tools")
    if line is not None:
        return line
    # %addon sections are not kept by pykickstart's handler: read the section header itself.
    m = re.search(r"^%addon\s+com_redhat_kdump\b[^\n]*--disable", ctx.text, re.M)
    if m:
        return ctx.text.count("\n", 0, m.start()) + 1
    return None


_seal("CCIS146", "seal-kdump", "warning", "Seal: kdump disabled",
      """kdump reserves memory at boot that small cloud instances cannot spare and fails without it: disable it
      ('services --disabled=kdump', 'systemctl disable kdump', '-kexec-tools' or '%addon com_redhat_kdump
      --disable').""",
      "kdump is not disabled (services --disabled=kdump)", _kdump_off, vm_only=True)
_seal("CCIS147", "seal-nautovts", "warning", "Seal: no virtual terminals (NAutoVTs=0)",
      """A headless instance has nobody at its virtual terminals: set NAutoVTs=0 in logind.conf so systemd does
      not spawn gettys on them.""",
      "%post never sets NAutoVTs=0 in logind.conf",
      lambda ctx: (pl.number if (pl := ctx.post_search(r"NAutoVTs=0\b")) else None), vm_only=True)


@rule("CCIS148", "seal-relabel", "info", "Seal: SELinux labels restored",
      """Files %post writes can carry the wrong SELinux label; finish with 'fixfiles -R -a restore' or
      'restorecon -R' (or touch /.autorelabel).""")
def _relabel(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container or _selinux_state(ctx)[0] == "disabled" or not ctx.posts:
        return
    if any(c.prog in ("fixfiles", "restorecon", "setfiles") for c in ctx.commands):
        return
    if ctx.post_search(r"\.autorelabel\b"):
        return
    yield Hit(0, "%post never restores SELinux labels (fixfiles -R -a restore / restorecon -R)")


SEAL_STEPS["CCIS148"] = lambda ctx: next((c.line for c in ctx.commands
                                          if c.prog in ("fixfiles", "restorecon", "setfiles")), None)


@rule("CCIS149", "post-erroronfail", "info", "%post --erroronfail for seal scripts",
      """Without --erroronfail a failing seal step is ignored and an unsealed image ships; with it the install
      stops and the build reports the failure.""")
def _erroronfail(ctx: LintContext) -> Iterator[Hit]:
    lines = {n for f in SEAL_STEPS.values() if (n := f(ctx))}
    for s in ctx.posts:
        if s.errorOnFail:
            continue
        body = range((s.lineno or 0) + 1, (s.lineno or 0) + 2 + s.script.count("\n"))
        if any(n in body for n in lines):
            yield Hit(s.lineno or 0, "this %post seals the image but has no --erroronfail")


# -- packages --------------------------------------------------------------------------------------------------

@rule("CCIS150", "firmware-excluded", "warning", "Firmware packages excluded",
      """Virtual machines load no device firmware; the *-firmware packages (linux-firmware, iwl*, alsa, ivtv...)
      add hundreds of MB. Exclude them in %packages ('-*-firmware', '-linux-firmware') or remove them in
      %post. Not checked for containers.""")
def _firmware(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container:
        return
    pk = ctx.handler.packages
    for entry in pk.packageList:
        if "firmware" in entry:
            yield Hit(ctx.package_lines.get(entry, ctx.packages_line()), f"{entry} is installed in a VM image")
    if any("firmware" in e for e in pk.excludedList):
        return
    if any(c.prog in ("dnf", "yum", "rpm") and any(v in c.argv for v in ("remove", "erase", "-e")) and
           any("firmware" in a for a in c.argv) for c in ctx.commands):
        return
    yield Hit(ctx.packages_line(), "firmware packages are not excluded (-*-firmware)")


@rule("CCIS151", "dracut-generic", "warning", "Generic initramfs",
      """The image boots on hypervisors it was not built on: install dracut-config-generic (or build the
      initramfs with --no-hostonly) so the initramfs carries every virtual disk driver.""")
def _dracut(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container:
        return
    if ctx.installed("dracut-config-generic") is not None:
        return
    if any(c.prog == "dracut" and any(a in ("-N", "--no-hostonly") for a in c.argv) for c in ctx.commands):
        return
    if ctx.post_search(r"hostonly\s*=\s*['\"]?no\b"):
        return
    yield Hit(ctx.packages_line(), "dracut-config-generic is not installed: the initramfs is host-only")


# -- repositories and install source ---------------------------------------------------------------------------

def _norm_url(url: str) -> str:
    return url.strip().strip("\"'").rstrip("/")


def _repo_url(r: Any) -> str:
    return _norm_url(r.baseurl or getattr(r, "mirrorlist", "") or getattr(r, "metalink", "") or "")


@rule("CCIS160", "repo-not-redistributable", "warning", "Only redistributable repositories",
      """A published image may only contain packages the SIG can redistribute: every repo line must be one of
      the release's repositories marked redistributable (kickstarts/releases/*.yaml). Overlays that add a
      third-party repository waive this with their reason.""")
def _repos(ctx: LintContext) -> Iterator[Hit]:
    if ctx.release is None:
        return
    arch = ctx.arch or "x86_64"
    known = {_norm_url(expand_arch(r.url, arch)): r for r in ctx.release.repos}
    tree = _norm_url(ctx.release.tree_url(arch))
    for r in ctx.handler.repo.repoList:
        url = _repo_url(r)
        if not url or url == tree:
            continue
        rel = known.get(url)
        if rel is None:
            yield Hit(r.lineno, f"repo {r.name} ({url}) is not a repository of {ctx.release.name}")
        elif not rel.redistributable:
            yield Hit(r.lineno, f"repo {r.name} is marked not redistributable in {ctx.release.source}")


def _centos_host(url: str) -> bool:
    host = (urlparse(url if "://" in url else "http://" + url).hostname or "").lower()
    return host == "centos.org" or host.endswith(".centos.org")


@rule("CCIS161", "repo-third-party", "info", "Repository outside CentOS",
      """(Plain kickstart files, without the catalog's release facts.) A repo on a host other than *.centos.org
      may carry packages the SIG cannot redistribute; check its licence before publishing.""")
def _third_party(ctx: LintContext) -> Iterator[Hit]:
    if ctx.release is not None:
        return
    for r in ctx.handler.repo.repoList:
        url = _repo_url(r)
        if url and not _centos_host(url):
            yield Hit(r.lineno, f"repo {r.name} is on a non-CentOS host ({urlparse(url).hostname or url})")


_FINAL = {KS_REBOOT: "reboot", KS_SHUTDOWN: "poweroff", KS_WAIT: "halt", None: "none (the installer waits)"}


@rule("CCIS170", "final-command", "error", "Final command right for the build backend",
      """Each build system expects a different last command: a local libvirt build waits for the guest to power
      off (poweroff/shutdown), koji and ImageFactory want reboot, livemedia-creator shutdown. The wrong one
      hangs the build or boots the installer again.""")
def _final(ctx: LintContext) -> Iterator[Hit]:
    if ctx.backend is None:
        return
    want = BACKEND_FINAL_COMMAND[ctx.backend]
    want_action = KS_REBOOT if want == "reboot" else KS_SHUTDOWN
    rb = ctx.handler.reboot
    action = rb.action if rb.seen else None
    if action != want_action:
        have = _FINAL.get(action, str(action))
        yield Hit(ctx.line_of(rb), f"the {ctx.backend} backend needs '{want}' as the final command, the kickstart "
                                   f"ends with {have}")


def _install_source(h: Any) -> tuple[str, Any] | None:
    for name in ("url", "nfs", "cdrom", "harddrive", "liveimg", "ostreesetup", "ostreecontainer", "bootc"):
        cmd = h.commands.get(name)
        if cmd is not None and cmd.seen:
            return name, cmd
    return None


@rule("CCIS171", "install-source", "warning", "Install source for a local build",
      """Official kickstarts carry no url line because koji supplies the tree; a local (libvirt) build must name
      it: 'url --url=https://.../BaseOS/ARCH/os/'. A url without a scheme is refused by the installer.""")
def _source(ctx: LintContext) -> Iterator[Hit]:
    h = ctx.handler
    src = _install_source(h)
    url = getattr(h.url, "url", None) if h.url.seen else None
    if url and not re.match(r"^(https?|ftp|file|nfs)://", url.strip("\"'")) and "$" not in url:
        yield Hit(h.url.lineno, f"url {url!r} has no scheme (http://, https://, ftp://, file://)")
    if src is None and ctx.backend == "libvirt":
        yield Hit(0, "no url (or other install source) line: a local libvirt build needs one")


@rule("CCIS172", "appstream-repo", "warning", "AppStream repo beside BaseOS",
      """From CentOS Stream 8 on, the install tree is BaseOS only; cloud-init, qemu-guest-agent and most tools
      live in AppStream. A kickstart whose url is a BaseOS tree needs a repo line for AppStream.""")
def _appstream(ctx: LintContext) -> Iterator[Hit]:
    h = ctx.handler
    url = (getattr(h.url, "url", None) or "") if h.url.seen else ""
    if "/BaseOS/" not in url:
        return
    if any("appstream" in (r.name or "").lower() or "/AppStream/" in _repo_url(r) for r in h.repo.repoList):
        return
    yield Hit(h.url.lineno, "url is a BaseOS tree but no repo line adds AppStream")


_LAYOUT = ("autopart", "part", "logvol", "raid", "volgroup", "mount", "btrfs")


@rule("CCIS173", "storage-layout", "error", "Automatic disk layout",
      """Without autopart or part/logvol/mount lines anaconda stops at the storage spoke and waits for a person:
      an unattended build hangs until its timeout.""")
def _layout(ctx: LintContext) -> Iterator[Hit]:
    for name in _LAYOUT:
        cmd = ctx.handler.commands.get(name)
        if cmd is None:
            continue
        data = cmd.dataList()
        if (data if data is not None else cmd.seen):
            return
    yield Hit(0, "no disk layout (autopart, part, logvol or mount): the installer will wait for input")


@rule("CCIS174", "firstboot-enabled", "warning", "No interactive first boot",
      """initial-setup (firstboot --enable or the package) asks questions on the console at first boot; on a
      cloud instance nobody answers and the boot stalls. Use 'firstboot --disabled'.""")
def _firstboot(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container:
        return
    fb = ctx.handler.firstboot
    if fb.seen and fb.firstboot is not None and fb.firstboot != FIRSTBOOT_SKIP:
        yield Hit(fb.lineno, "firstboot is enabled: initial-setup would wait on the console")
    line = ctx.installed("initial-setup")
    if line is not None:
        yield Hit(line, "initial-setup is installed: it would wait on the console at first boot")


@rule("CCIS175", "ignore-missing", "info", "%packages --ignoremissing",
      """--ignoremissing installs without the packages it cannot find and says nothing: a renamed package
      silently drops out of the image. Prefer failing.""")
def _ignoremissing(ctx: LintContext) -> Iterator[Hit]:
    if ctx.handler.packages.handleMissing == KS_MISSING_IGNORE:
        yield Hit(ctx.packages_line(), "%packages --ignoremissing hides packages that are not found")


@rule("CCIS180", "network-dhcp", "warning", "Network by DHCP, on boot",
      """A cloud image must bring its NIC up by itself wherever it lands: one 'network --bootproto=dhcp
      --onboot=on' (--device=link) line, and no static addresses from the build network.""")
def _network(ctx: LintContext) -> Iterator[Hit]:
    if ctx.container:
        return
    nets = ctx.handler.network.network
    if not nets:
        yield Hit(0, "no network command: the image's network setup is left to the installer's defaults")
        return
    for n in nets:
        if n.bootProto == "static" or n.ip:
            yield Hit(n.lineno, f"network{' ' + n.device if n.device else ''} has a static address")
    if not any(n.bootProto == "dhcp" and n.onboot is not False for n in nets):
        yield Hit(nets[0].lineno, "no network line with --bootproto=dhcp and --onboot=on")


@rule("CCIS190", "timezone-utc", "info", "UTC timezone for cloud images",
      """Cloud instances run in any region; the convention is UTC (users and cloud-init change it).""")
def _timezone(ctx: LintContext) -> Iterator[Hit]:
    tz = ctx.handler.timezone
    if not tz.seen or not tz.timezone:
        yield Hit(0, "no timezone command (UTC recommended)")
    elif tz.timezone not in ("UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal", "Zulu"):
        yield Hit(tz.lineno, f"timezone is {tz.timezone}; cloud images use UTC")


@rule("CCIS200", "fidelity-stale", "warning", "Stale fidelity-ledger explanation",
      """The target's fidelity ledger explains a difference from the official kickstart it follows that no longer
      exists between that kickstart's recorded facts and this one: the catalog changed (or adopted the official
      choice) and the explanation was left behind. Remove it, or correct its key (`diff PROFILE --explain`).""")
def _fidelity_stale(ctx: LintContext) -> Iterator[Hit]:
    if ctx.target is None or ctx.release is None:
        return
    from ccis_workbench.core.ledger import stale_target_explanations

    for e in stale_target_explanations(ctx.target, ctx.release, ctx.handler):
        yield Hit(0, f"the ledger explains {e.key!r}, which matches no difference from the official kickstart "
                  "any more", Origin(e.layer or f"target:{ctx.target.name}", e.file, e.line))
