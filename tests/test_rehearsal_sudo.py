"""The REHEARSAL system's sudo, its NoCloud reader's sudo rule and its pattern-aware rpm.

Fast tests run the real payload of the built rehearsal tree (extracted from its installer initrd: busybox, the
setuid sudo compiled from files/sudo.c, files/rpm, files/nocloud, the stub useradd) in a chroot of a temporary
directory, as root, switching to unprivileged users with busybox `su`. The NoCloud reader runs in its own UTS and
mount namespaces (it sets the hostname) and reads seeds made by core/seed.py.

The end-to-end test builds openstack-stream9 from the rehearsal tree on real libvirtd/TCG and boot-tests it once
with `--only` on the checks that need root or `rpm -qa PATTERN`, plus two profile checks from a temporary catalog
copy: the seeded user's sudo rule, and a user without a rule who must be refused.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.initrd import read_cpio
from tests.fixtures_libvirt import left_behind

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = "payload/root/"
UNSHARE = shutil.which("unshare")
CHROOT = shutil.which("chroot")


# -- a chroot of the rehearsal system's root --------------------------------------------------------------------

@pytest.fixture(scope="module")
def payload_members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The members of the rehearsal system's root, from the installer initrd of a freshly built tree."""
    from ccis_workbench.rehearsal.tree import build_tree, find_host_parts

    if os.geteuid() != 0 or CHROOT is None or UNSHARE is None:
        pytest.skip("needs root, chroot and unshare (the sudo under test is setuid root)")
    try:
        find_host_parts()
    except WorkbenchError as exc:
        pytest.skip(f"{exc.title}: {exc.hint}")
    tree = build_tree(cache=tmp_path_factory.mktemp("rehearsal-cache"))
    initrd = gzip.decompress((tree / "images/pxeboot/initrd.img").read_bytes())
    return {e.name[len(PAYLOAD):]: e for e in read_cpio(initrd) if e.name.startswith(PAYLOAD)}


@pytest.fixture
def sysroot(payload_members: dict[str, object], tmp_path: Path) -> Path:
    """The rehearsal system's root unpacked in a temporary directory (without the kernel and device nodes)."""
    root = tmp_path / "root"
    root.mkdir()
    for name in sorted(payload_members, key=lambda n: (n.count("/"), n)):
        e = payload_members[name]
        dest = root / name
        fmt = stat.S_IFMT(e.mode)  # type: ignore[attr-defined]
        if name.startswith("boot/") or fmt not in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if fmt == stat.S_IFDIR:
            dest.mkdir(exist_ok=True)
        elif fmt == stat.S_IFLNK:
            dest.symlink_to(e.data.decode())  # type: ignore[attr-defined]
            continue
        else:
            dest.write_bytes(e.data)  # type: ignore[attr-defined]
        os.chown(dest, e.uid, e.gid)  # type: ignore[attr-defined]
        os.chmod(dest, stat.S_IMODE(e.mode))  # type: ignore[attr-defined]
    for d in ("tmp", "run", "proc", "var/lib/cloud"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    return root


def run_in(root: Path, *argv: str, user: str | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run *argv* in the chroot *root* (as *user* through busybox su when given), in private mount, PID, UTS
    and IPC namespaces with /proc mounted as in the running system (busybox's shell finds its applets through
    /proc/self/exe: without /proc it would fall back to PATH, hiding applet-preference problems)."""
    inner = list(argv)
    if user is not None:
        inner = ["/bin/su", user, "-s", "/bin/sh", "-c", " ".join(_sh_quote(a) for a in argv)]
    cmd = [str(UNSHARE), "--mount", "--pid", "--fork", "--uts", "--ipc", str(CHROOT), str(root),
           "/bin/sh", "-c", 'mount -t proc proc /proc && exec "$@"', "sh", *inner]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb", "HOME": "/root", "SECRET": "leak-me"}
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env)


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def add_user(root: Path, name: str) -> None:
    proc = run_in(root, "/usr/sbin/useradd", name)
    assert proc.returncode == 0, proc.stderr


def write_rule(root: Path, filename: str, text: str, mode: int = 0o440, uid: int = 0) -> Path:
    p = root / "etc/sudoers.d" / filename
    p.write_text(text)
    os.chown(p, uid, 0)
    os.chmod(p, mode)
    return p


# -- rpm -------------------------------------------------------------------------------------------------------

RECORD = """core-0-rehearsal.noarch
chrony-0-rehearsal.noarch
cloud-init-0-rehearsal.noarch
cloud-utils-growpart-0-rehearsal.noarch
iwl100-firmware-0-rehearsal.noarch
libertas-sd8686-firmware-0-rehearsal.noarch
"""


def test_rpm_qa_with_patterns_lists_only_the_matching_packages(sysroot: Path) -> None:
    (sysroot / "var/lib/rehearsal/packages").write_text(RECORD)
    everything = run_in(sysroot, "/usr/bin/rpm", "-qa")
    assert everything.returncode == 0 and everything.stdout == RECORD
    fw = run_in(sysroot, "/usr/bin/rpm", "-qa", "iwl*-firmware", "libertas*-firmware")
    assert fw.returncode == 0
    assert fw.stdout.splitlines() == ["iwl100-firmware-0-rehearsal.noarch",
                                      "libertas-sd8686-firmware-0-rehearsal.noarch"]
    cloud = run_in(sysroot, "/usr/bin/rpm", "-qa", "cloud*")
    assert cloud.stdout.splitlines() == ["cloud-init-0-rehearsal.noarch", "cloud-utils-growpart-0-rehearsal.noarch"]
    # the full name-version-release.arch matches too; a pattern matching nothing prints nothing, exit 0
    assert run_in(sysroot, "/usr/bin/rpm", "-qa", "chrony-0-*.noarch").stdout == "chrony-0-rehearsal.noarch\n"
    none = run_in(sysroot, "/usr/bin/rpm", "-qa", "plymouth*")
    assert none.returncode == 0 and none.stdout == ""


def test_the_systems_own_rpm_wins_over_the_busybox_applet(sysroot: Path) -> None:
    """Debian's busybox-static shell prefers its applets to PATH: the payload's busybox has `rpm` (and the stubbed
    `depmod`) renamed in its applet table, so the shell runs /usr/bin/rpm."""
    (sysroot / "var/lib/rehearsal/packages").write_text(RECORD)
    listed = run_in(sysroot, "/bin/busybox", "--list").stdout.split()
    assert "rpm" not in listed and "depmod" not in listed and "rpm2cpio" in listed and "route" in listed
    assert run_in(sysroot, "/bin/sh", "-c", "rpm -qa 'iwl*'").stdout == "iwl100-firmware-0-rehearsal.noarch\n"
    assert run_in(sysroot, "/bin/sh", "-c", "depmod -a").stderr.startswith("rehearsal: depmod -a (no-op")
    # the control: with the host's own busybox, the shell runs its rpm applet, which knows no -qa
    shutil.copyfile(Path("/bin/busybox").resolve(), sysroot / "bin/busybox")
    applet = run_in(sysroot, "/bin/sh", "-c", "rpm -qa 'iwl*'")
    assert applet.returncode != 0 and "BusyBox" in applet.stderr


def test_rpm_q_several_names_exit_status_counts_the_missing(sysroot: Path) -> None:
    (sysroot / "var/lib/rehearsal/packages").write_text(RECORD)
    proc = run_in(sysroot, "/usr/bin/rpm", "-q", "chrony", "cloud", "cloud-init", "plymouth")
    assert proc.stdout.splitlines() == ["chrony-0-rehearsal.noarch", "package cloud is not installed",
                                        "cloud-init-0-rehearsal.noarch", "package plymouth is not installed"]
    assert proc.returncode == 2  # `cloud` is no prefix match: names are exact, as in rpm
    ok = run_in(sysroot, "/usr/bin/rpm", "-q", "cloud-init-0-rehearsal.noarch", "core")
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 2
    erased = run_in(sysroot, "/usr/bin/rpm", "-e", "chrony")  # emulated, said on stderr, and the list follows
    assert erased.returncode == 0 and "rehearsal emulated: rpm -e chrony" in erased.stderr
    assert run_in(sysroot, "/usr/bin/rpm", "-q", "chrony").returncode == 1
    unknown = run_in(sysroot, "/usr/bin/rpm", "--verify", "cloud-init")  # nothing else is pretended
    assert unknown.returncode == 1 and "not supported by the rehearsal rpm" in unknown.stderr


def test_the_specs_rpm_checks_answer_in_the_rehearsal_system(sysroot: Path) -> None:
    """The release baseline's firmware check and the derived package checks, run as the spec writes them."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.testspec import evaluate, load_spec, select_checks

    (sysroot / "var/lib/rehearsal/packages").write_text(
        "".join(f"{p}-0-rehearsal.noarch\n" for p in ("chrony", "cloud-init", "cloud-utils-growpart",
                                                      "dracut-config-generic", "grub2-pc", "qemu-guest-agent",
                                                      "rsync", "tar", "grub2-pc-modules", "grub2-efi-x64",
                                                      "shim")))
    cat = Catalog.load(REPO)
    plan = select_checks(load_spec(REPO), Composer(cat).compose(cat.load_profile("openstack-stream9")))
    checks = {s.check.id: s.check for s in plan.selected}
    for cid in ("baseline.no-wifi-firmware", "derived.packages-installed", "derived.packages-removed",
                "openstack.qemu-guest-agent"):
        c = checks[cid]
        proc = run_in(sysroot, "/bin/sh", "-c", c.command)
        passed, why = evaluate(c, proc.returncode, proc.stdout + proc.stderr)
        assert passed, f"{cid}: {why}\n{proc.stdout}{proc.stderr}"
    # and it can fail: a firmware package in the record is counted
    with (sysroot / "var/lib/rehearsal/packages").open("a") as fh:
        fh.write("iwl7260-firmware-0-rehearsal.noarch\n")
    c = checks["baseline.no-wifi-firmware"]
    proc = run_in(sysroot, "/bin/sh", "-c", c.command)
    assert proc.stdout.strip() == "1" and not evaluate(c, proc.returncode, proc.stdout)[0]


# -- sudo ------------------------------------------------------------------------------------------------------

def test_sudo_is_a_static_setuid_root_binary_in_the_payload(payload_members: dict[str, object]) -> None:
    sudo = payload_members["usr/bin/sudo"]
    assert stat.S_ISREG(sudo.mode) and stat.S_IMODE(sudo.mode) == 0o4755  # type: ignore[attr-defined]
    assert sudo.uid == 0 and sudo.gid == 0  # type: ignore[attr-defined]
    assert sudo.data.startswith(b"\x7fELF") and b"ld-linux" not in sudo.data[:65536]  # type: ignore[attr-defined]
    d = payload_members["etc/sudoers.d"]
    assert stat.S_ISDIR(d.mode) and stat.S_IMODE(d.mode) == 0o750  # type: ignore[attr-defined]
    assert "etc/sudoers" not in payload_members, "no rule ships in the image: the seed's user gets one at boot"
    assert payload_members["etc/shadow"].data.startswith(b"root:*:")  # type: ignore[attr-defined]


def test_sudo_grants_root_only_to_a_user_with_a_nopasswd_rule(sysroot: Path) -> None:
    add_user(sysroot, "alice")
    add_user(sysroot, "bob")
    write_rule(sysroot, "90-cloud-init-users", "# User rules for alice\nalice ALL=(ALL) NOPASSWD:ALL\n")
    ok = run_in(sysroot, "sudo", "-n", "id", "-u", user="alice")
    assert (ok.returncode, ok.stdout) == (0, "0\n"), ok.stderr
    assert run_in(sysroot, "sudo", "-n", "true", user="alice").returncode == 0
    both = run_in(sysroot, "/bin/sh", "-c", "id -u; sudo -n /bin/sh -c 'id -u; id -g; id -G'", user="alice")
    assert both.stdout.split() == ["1000", "0", "0", "0"], "real and effective ids, and root's groups only"

    refused = run_in(sysroot, "sudo", "-n", "id", "-u", user="bob")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", "sudo: a password is required\n")
    asked = run_in(sysroot, "sudo", "id", "-u", user="bob")
    assert asked.returncode == 1 and asked.stdout == ""
    assert "bob is not in the sudoers file" in asked.stderr
    assert run_in(sysroot, "sudo", "-n", "-s", user="bob", stdin="id -u\n").stdout == ""


def test_sudo_shell_and_environment(sysroot: Path) -> None:
    add_user(sysroot, "alice")
    write_rule(sysroot, "90-cloud-init-users", "alice ALL=(ALL) NOPASSWD:ALL\n")
    shell = run_in(sysroot, "sudo", "-n", "-s", user="alice", stdin="id -u; echo \"home=$HOME\"\n")
    assert shell.returncode == 0 and shell.stdout.split() == ["0", "home=/root"]
    sh_c = run_in(sysroot, "sudo", "-s", "echo", "a b", "c;d", user="alice")
    assert sh_c.stdout == "a b c;d\n", "sudo -s CMD ARGS quotes the words for sh -c"
    env = dict(line.split("=", 1) for line in run_in(sysroot, "sudo", "-n", "env", user="alice").stdout.splitlines())
    assert env["HOME"] == "/root" and env["USER"] == "root" and env["LOGNAME"] == "root"
    assert env["TERM"] == "dumb" and env["SUDO_USER"] == "alice" and env["SUDO_UID"] == "1000"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "SECRET" not in env
    missing = run_in(sysroot, "sudo", "-n", "no-such-command", user="alice")
    assert missing.returncode == 1 and "no-such-command: command not found" in missing.stderr


def test_sudo_list(sysroot: Path) -> None:
    add_user(sysroot, "alice")
    add_user(sysroot, "bob")
    write_rule(sysroot, "90-cloud-init-users", "alice ALL=(ALL) NOPASSWD:ALL\n")
    granted = run_in(sysroot, "/usr/bin/sudo", "-l", "-U", "alice")  # as root
    assert granted.returncode == 0 and "    (ALL) NOPASSWD: ALL\n" in granted.stdout
    assert run_in(sysroot, "/usr/bin/sudo", "-l", "-U", "bob").returncode == 1
    assert run_in(sysroot, "sudo", "-l", user="bob").returncode == 1
    own = run_in(sysroot, "sudo", "-l", user="alice")
    assert own.returncode == 0 and "(ALL) NOPASSWD: ALL" in own.stdout
    nosy = run_in(sysroot, "sudo", "-l", "-U", "alice", user="bob")
    assert nosy.returncode == 1 and "not allowed to list" in nosy.stderr


@pytest.mark.parametrize("case", ["world-writable", "not-root-owned", "dotted-name", "backup-name",
                                  "password-rule", "other-commands", "group-without-member", "not-setuid"])
def test_sudo_refuses_what_sudo_would_refuse(sysroot: Path, case: str) -> None:
    add_user(sysroot, "alice")
    rule = "alice ALL=(ALL) NOPASSWD:ALL\n"
    if case == "world-writable":
        write_rule(sysroot, "90-cloud-init-users", rule, mode=0o666)
    elif case == "not-root-owned":
        write_rule(sysroot, "90-cloud-init-users", rule, uid=1000)
    elif case == "dotted-name":
        write_rule(sysroot, "90-cloud-init-users.rpmsave", rule)
    elif case == "backup-name":
        write_rule(sysroot, "90-cloud-init-users~", rule)
    elif case == "password-rule":
        write_rule(sysroot, "90-cloud-init-users", "alice ALL=(ALL) ALL\n")
    elif case == "other-commands":
        write_rule(sysroot, "90-cloud-init-users", "alice ALL=(ALL) NOPASSWD: /usr/bin/id\nalicex " + rule[6:])
    elif case == "group-without-member":
        write_rule(sysroot, "90-cloud-init-users", "%wheel ALL=(ALL) NOPASSWD:ALL\n")
    elif case == "not-setuid":
        write_rule(sysroot, "90-cloud-init-users", rule)
        os.chmod(sysroot / "usr/bin/sudo", 0o755)
    proc = run_in(sysroot, "sudo", "-n", "id", "-u", user="alice")
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr


def test_sudo_honours_a_group_rule(sysroot: Path) -> None:
    add_user(sysroot, "carol")
    with (sysroot / "etc/group").open("a") as fh:
        fh.write("admins:x:20:carol\n")
    write_rule(sysroot, "50-admins", "%admins ALL=(ALL:ALL) NOPASSWD: ALL\n")
    assert run_in(sysroot, "sudo", "-n", "id", "-u", user="carol").stdout == "0\n"


# -- the NoCloud reader writes the seed user's rule ----------------------------------------------------------

def _seed(root: Path, legacy: bool, extra: str = "", user: str | None = "ccis-test1") -> str:
    from ccis_workbench.core.seed import SeedData, make_credentials, nocloud_meta_data, user_data

    creds = make_credentials(user)
    try:
        seed = SeedData("iid-ccis-test", "rehearsal-test", creds, legacy=legacy)
        seed_dir = root / "seed"
        seed_dir.mkdir()
        text = user_data(seed)
        if user is None:
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("user:")) + "\n"
        (seed_dir / "user-data").write_text(text + extra)
        (seed_dir / "meta-data").write_text(nocloud_meta_data(seed))
        return creds.user
    finally:
        creds.cleanup()


def _read_seed(root: Path) -> subprocess.CompletedProcess[str]:
    proc = run_in(root, "/usr/lib/rehearsal/nocloud", "/seed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-seed", "full-cloud-config"])
def test_nocloud_gives_the_seeded_user_a_sudo_rule(sysroot: Path, legacy: bool) -> None:
    shadow_root = (sysroot / "etc/shadow").read_text().splitlines()[0]
    user = _seed(sysroot, legacy)
    out = _read_seed(sysroot).stdout
    assert f"sudo rule for {user}: ALL=(ALL) NOPASSWD:ALL" in out
    rule = sysroot / "etc/sudoers.d/90-cloud-init-users"
    st = rule.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o440)
    assert f"\n{user} ALL=(ALL) NOPASSWD:ALL\n" in rule.read_text()
    passwd = {ln.split(":")[0]: ln.split(":") for ln in (sysroot / "etc/passwd").read_text().splitlines()}
    assert int(passwd[user][2]) >= 1000, "the seeded user is never uid 0"
    shadow = (sysroot / "etc/shadow").read_text().splitlines()
    assert shadow[0] == shadow_root, "root stays locked"
    assert [ln for ln in shadow if ln.startswith(f"{user}:$")], "the seed's password was set"
    assert run_in(sysroot, "sudo", "-n", "id", "-u", user=user).stdout == "0\n"
    assert "(ALL) NOPASSWD: ALL" in run_in(sysroot, "/usr/bin/sudo", "-l", "-U", user).stdout


def test_nocloud_honours_sudo_false(sysroot: Path) -> None:
    user = _seed(sysroot, legacy=True, extra="sudo: false\n")
    assert f"no sudo rule for {user}" in _read_seed(sysroot).stdout
    assert not (sysroot / "etc/sudoers.d/90-cloud-init-users").exists()
    proc = run_in(sysroot, "sudo", "-n", "true", user=user)
    assert (proc.returncode, proc.stderr) == (1, "sudo: a password is required\n")


def test_nocloud_honours_an_explicit_sudo_line(sysroot: Path) -> None:
    user = _seed(sysroot, legacy=True, extra='sudo: "ALL=(ALL) ALL"\n')
    _read_seed(sysroot)
    assert f"\n{user} ALL=(ALL) ALL\n" in (sysroot / "etc/sudoers.d/90-cloud-init-users").read_text()
    assert run_in(sysroot, "sudo", "-n", "true", user=user).returncode == 1, "a password rule is not NOPASSWD"


def test_nocloud_never_touches_root(sysroot: Path) -> None:
    shadow = (sysroot / "etc/shadow").read_text()
    out = _read_seed_with(sysroot, user=None)
    assert "root stays locked" in out
    assert (sysroot / "etc/shadow").read_text() == shadow
    assert not (sysroot / "etc/sudoers.d/90-cloud-init-users").exists()


def _read_seed_with(root: Path, user: str | None) -> str:
    _seed(root, legacy=True, user=user)
    return _read_seed(root).stdout


def test_nocloud_refuses_root_as_the_seed_user(sysroot: Path) -> None:
    shadow = (sysroot / "etc/shadow").read_text()
    (sysroot / "seed").mkdir()
    (sysroot / "seed/user-data").write_text("#cloud-config\nuser: root\npassword: abcdefgh\n")
    (sysroot / "seed/meta-data").write_text("instance-id: iid-1\n")
    assert "user root refused" in _read_seed(sysroot).stdout
    assert (sysroot / "etc/shadow").read_text() == shadow
    assert not (sysroot / "etc/sudoers.d/90-cloud-init-users").exists()


# -- end to end: build, boot test the newly possible checks -----------------------------------------------------

NEW_CHECKS = ("baseline.root-locked", "derived.root-locked", "baseline.no-wifi-firmware",
              "derived.packages-installed", "openstack.qemu-guest-agent")
PROFILE_CHECKS = """checks:
  - id: profile.sudo-rule
    description: the seeded user (not uid 0) has the seed's passwordless sudo rule, and sudo -l says so
    command: >-
      echo "uid $(id -u "$CCIS_USER")"; [ "$(id -u "$CCIS_USER")" != 0 ] || exit 1;
      grep -x "$CCIS_USER ALL=(ALL) NOPASSWD:ALL" /etc/sudoers.d/90-cloud-init-users &&
      sudo -l -U "$CCIS_USER" && ls -ln /usr/bin/sudo | awk '{ print "sudo " $1 " " $3 }'
    output: '^sudo -rwsr-xr-x 0$'
    timeout: 30
  - id: profile.sudo-refused
    description: a user without a sudoers rule is refused (sudo -n exits 1 and asks for a password)
    command: >-
      useradd ccis-norule >/dev/null 2>&1; id -u ccis-norule;
      out=$(su ccis-norule -s /bin/sh -c 'sudo -n id -u' 2>&1 </dev/null); rc=$?;
      echo "refused: $out (exit $rc)"; [ "$rc" = 1 ] && ! sudo -l -U ccis-norule >/dev/null
    output: '^refused: sudo: a password is required \\(exit 1\\)$'
    timeout: 30
"""


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccis_workbench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def _catalog_copy(dest: Path) -> Path:
    """The repository's catalog with the new checks in the spec's rehearsal list and the two profile checks."""
    import yaml

    shutil.copytree(REPO / "kickstarts", dest / "kickstarts")
    shutil.copytree(REPO / "profiles", dest / "profiles")
    spec_path = dest / "kickstarts/testspec.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["rehearsal"] = [*spec.get("rehearsal", []), *NEW_CHECKS, "profile.sudo-*"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    profile = dest / "profiles/openstack-stream9.yaml"
    assert "checks:" not in profile.read_text()
    profile.write_text(profile.read_text() + PROFILE_CHECKS)
    return dest


@pytest.mark.libvirt
@pytest.mark.slow
def test_rehearsal_boot_test_runs_root_checks_through_sudo(tmp_path_factory: pytest.TempPathFactory,
                                                           libvirt_uri: str) -> None:
    pytest.importorskip("libvirt")
    uri = libvirt_uri
    out = tmp_path_factory.mktemp("sudo-artifacts")
    build = _cli("build", "openstack-stream9", "--tree", "rehearsal", "--accel", "tcg", "--disk-size", "256M",
                 "--format", "qcow2", "--output", str(out), "--quiet")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    artifact = next(d for d in out.iterdir() if (d / "manifest.json").exists())
    catalog = _catalog_copy(tmp_path_factory.mktemp("catalog"))
    report_dir = tmp_path_factory.mktemp("sudo-report")
    only = [a for cid in (*NEW_CHECKS, "profile.sudo-*") for a in ("--only", cid)]
    res = _cli("--catalog", str(catalog), "boot-test", str(artifact), "--accel", "tcg", "--quiet",
               "-o", str(report_dir), *only)
    report = json.loads((report_dir / "report.json").read_text())
    assert left_behind(uri, report["domain"]) == []
    ran = {c["id"]: c for c in report["checks"] if c["status"] != "skipped"}
    detail = "\n".join(f"{c['id']}: {c['status']} {c.get('reason', '')} | {c.get('output', '')}"
                       for c in ran.values())
    assert res.returncode == 0, detail + "\n" + res.stdout[-3000:] + res.stderr[-2000:]
    assert report["passed"] and report["ending"] == "completed"
    assert not [n for n in report.get("notes", []) if "sudo did not work" in n], report.get("notes")
    assert set(ran) == {*NEW_CHECKS, "profile.sudo-rule", "profile.sudo-refused"}, detail
    assert {c["status"] for c in ran.values()} == {"passed"}, detail
    assert "(ALL) NOPASSWD: ALL" in ran["profile.sudo-rule"]["output"]
