"""Boot-test seeds and per-run credentials.

A seed is the small CD-ROM a cloud gives an instance at first boot; the boot test gives the guest the one its
target expects, built with pycdlib (no genisoimage):

- NoCloud: volume `cidata`, files `user-data` and `meta-data` (cloud-init's NoCloud datasource);
- ConfigDrive: volume `config-2`, `openstack/latest/meta_data.json` and `user_data` (OpenStack, CloudStack);
- OpenNebula: volume `CONTEXT`, `context.sh` (one-context, or cloud-init's OpenNebula datasource).

Every seed creates the same thing: a per-run user with a random password (for the serial-console login) and a
per-run ed25519 SSH key, passwordless sudo as the image's default user has it, and the hostname and instance-id
of the run. Credentials live in a private temporary directory, are never written into an artifact, a report or
a saved log (`Credentials.redact` removes them from text), and are deleted with `Credentials.cleanup()` on every
ending of the run; a run killed before it could (SIGKILL) leaves its directory behind, and `gc` removes it
(`remove_stale_credentials`: the directory's owner stamp names a process that is gone).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import stat as stat_module
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError

SEED_KINDS = ("nocloud", "configdrive", "opennebula")
VOLUME_LABELS = {"nocloud": "cidata", "configdrive": "config-2", "opennebula": "CONTEXT"}
#: The comment on the per-run public key; the spec's cloud-init.ssh-key check looks for it.
KEY_COMMENT = "ccis-workbench-boot-test"
REDACTED = "[redacted]"
#: Per-run credentials directories: ccis-boot-test-XXXX in the temporary directory, mode 0700, holding the private
#: key (0600), the owner stamp (PID and start time of the run) and, for a kept guest, its password and domain.
CREDENTIALS_PREFIX = "ccis-boot-test-"
OWNER_FILE = "owner"
KEPT_FILE = "kept-for"
#: Seeds are padded to this size (see build_iso).
MIN_ISO_BYTES = 1 << 20
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_IID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def redact_text(text: str, secrets_: list[str] | tuple[str, ...]) -> str:
    """*text* with every one of *secrets_* replaced by [redacted] (longest first, so none is left in part)."""
    for s in sorted((s for s in secrets_ if s), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


class StreamRedactor:
    """Redacts secrets from text that arrives in pieces (a console read by read): a secret split across reads is
    caught because the end of what was read that could begin a secret (at most len(secret)-1 characters) is held
    back until the next piece shows whether it is one. `feed` returns what is safe to show now; `flush` (at the
    end) returns what was held back, with a held piece of eight characters or more that begins a secret
    redacted as well (a secret cut off by the end of the stream)."""

    #: a held-back start of a secret at least this long is redacted by `flush`
    PARTIAL_MIN = 8

    def __init__(self, secrets_: list[str] | tuple[str, ...]) -> None:
        self.secrets = [s for s in secrets_ if s]
        self._held = ""

    def _hold(self, text: str) -> int:
        """How many characters at the end of *text* could begin one of the secrets."""
        best = 0
        for s in self.secrets:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def feed(self, chunk: str) -> str:
        text = redact_text(self._held + chunk, self.secrets)
        n = self._hold(text)
        self._held = text[len(text) - n:] if n else ""
        return text[: len(text) - n]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return REDACTED if len(held) >= self.PARTIAL_MIN else held


@dataclass
class Credentials:
    """One run's user, password and SSH key pair (the private key stays in *workdir*, mode 0700)."""

    user: str
    password: str
    public_key: str
    workdir: Path
    private_key: Path
    _secrets: list[str] = field(default_factory=list, repr=False)
    #: the password is an image's public convention (Vagrant's vagrant/vagrant), not a per-run secret
    public_password: bool = False

    def __repr__(self) -> str:  # never print the password by accident
        return f"Credentials(user={self.user!r}, password={REDACTED}, workdir={str(self.workdir)!r})"

    def secrets(self) -> list[str]:
        """Strings that must never reach a log or a report."""
        return [s for s in (None if self.public_password else self.password, *self._secrets) if s]

    def redact(self, text: str) -> str:
        """*text* with every secret replaced by [redacted]."""
        return redact_text(text, self.secrets())

    def cleanup(self) -> None:
        """Delete the private key and its directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Credentials:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def make_credentials(user: str | None = None, tmp_root: str | Path | None = None) -> Credentials:
    """A random user (ccis-XXXX unless given), a random password and an ed25519 key made by ssh-keygen."""
    user = user or f"ccis-{secrets.token_hex(3)}"
    if not _USER.fullmatch(user):
        raise WorkbenchError("Bad user name", f"{user!r} is not a POSIX user name", hint="for example ccis-test")
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        raise WorkbenchError("ssh-keygen is missing", "the boot test makes a per-run SSH key with ssh-keygen",
                             hint="apt-get install openssh-client (dnf install openssh-clients)")
    workdir = Path(tempfile.mkdtemp(prefix=CREDENTIALS_PREFIX, dir=tmp_root))
    os.chmod(workdir, 0o700)
    _write_private(workdir / OWNER_FILE, _owner_stamp(os.getpid()) + "\n")
    key = workdir / "id_ed25519"
    try:
        subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f", str(key)],
                       check=True, capture_output=True, text=True, timeout=30)
        public = (workdir / "id_ed25519.pub").read_text(encoding="ascii").strip()
        private_text = key.read_text(encoding="ascii")
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise WorkbenchError("Cannot make an SSH key", f"ssh-keygen failed: {exc}") from None
    # letters and digits only: nothing a serial line, a shell or a YAML scalar could misread
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    password = "".join(secrets.choice(alphabet) for _ in range(24))
    body = [ln for ln in private_text.splitlines() if ln and not ln.startswith("-----")]
    return Credentials(user=user, password=password, public_key=public, workdir=workdir, private_key=key,
                       _secrets=body)


def _write_private(path: Path, text: str) -> None:
    """Create *path* (mode 0600 from the start, never through a link or over an existing file) with *text*."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _owner_stamp(pid: int) -> str:
    """'PID STARTTIME': the process and its start time (so a reused PID is not taken for the owner)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid} {start}"


def _owner_alive(stamp: str) -> bool:
    parts = stamp.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return False
    return _owner_stamp(int(parts[0])) == stamp and parts[1] != "?"


def keep_password(creds: Credentials, domain: str) -> Path:
    """For a guest kept running (--keep-on-failure): its password in *creds*' directory (0600), and a note that
    the directory belongs to *domain* (`gc` removes both). Returns the password file."""
    pw = creds.workdir / "password"
    _write_private(pw, creds.password + "\n")
    _write_private(creds.workdir / KEPT_FILE, domain + "\n")
    return pw


@dataclass
class CredentialDir:
    """A per-run credentials directory found by `gc`: live while the run that made it is running."""

    path: Path
    live: bool
    kept_for: str = ""  # the domain a --keep-on-failure run left running with these credentials
    removed: bool = False
    error: str = ""


def credential_dirs(tmp_root: str | Path | None = None) -> list[CredentialDir]:
    """The per-run credentials directories under *tmp_root* (the system's temporary directory): this user's
    own real directories named ccis-boot-test-*, each live or not (its run was killed: nothing removed it)."""
    root = Path(tmp_root or tempfile.gettempdir())
    out = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for d in entries:
        if not d.name.startswith(CREDENTIALS_PREFIX):
            continue
        try:
            st = d.lstat()
        except OSError:
            continue
        if not stat_module.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        try:
            owner = (d / OWNER_FILE).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            owner = ""
        try:
            kept = (d / KEPT_FILE).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            kept = ""
        out.append(CredentialDir(d, _owner_alive(owner), kept))
    return out


def remove_stale_credentials(tmp_root: str | Path | None = None, *, dry_run: bool = False) -> list[CredentialDir]:
    """Remove the credentials directories whose run is gone (killed, even by SIGKILL); live ones are kept."""
    found = credential_dirs(tmp_root)
    for c in found:
        if c.live or dry_run:
            continue
        shutil.rmtree(c.path, ignore_errors=True)
        c.removed = not c.path.exists()
        if not c.removed:
            c.error = "could not be removed"
    return found


@dataclass
class SeedData:
    """What the seed tells the guest."""

    instance_id: str
    hostname: str
    credentials: Credentials
    #: the plain `user: NAME` + `password:` form that the rehearsal image's small NoCloud reader understands
    #: (cloud-init accepts it too, with a deprecation warning)
    legacy: bool = False

    def __post_init__(self) -> None:
        if not _IID.fullmatch(self.instance_id):
            raise WorkbenchError("Bad instance-id", repr(self.instance_id), hint="letters, digits, . _ -")
        if not _HOSTNAME.fullmatch(self.hostname):
            raise WorkbenchError("Bad hostname", repr(self.hostname), hint="lower-case letters, digits and hyphens")


def new_instance_id() -> str:
    """iid-ccis-<random>: unique per run, so cloud-init treats every boot test as a new instance."""
    return f"iid-ccis-{secrets.token_hex(6)}"


def user_data(seed: SeedData) -> str:
    """#cloud-config user-data: the run's user as the instance's default user, with passwordless sudo, its
    password (serial-console login) and SSH key."""
    c = seed.credentials
    if seed.legacy:
        user = f"user: {c.user}\n"
    else:
        user = (f"user:\n  name: {c.user}\n  lock_passwd: false\n  sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
                "  gecos: ccis-workbench boot test\n")
    return (
        "#cloud-config\n"
        "# ccis-workbench boot test: per-run credentials; this seed exists only while the test runs\n"
        f"hostname: {seed.hostname}\n"
        f"{user}"
        f"password: {c.password}\n"
        "chpasswd:\n"
        "  expire: false\n"
        "ssh_pwauth: true\n"
        "ssh_authorized_keys:\n"
        f"  - {c.public_key}\n"
    )


def nocloud_meta_data(seed: SeedData) -> str:
    return f"instance-id: {seed.instance_id}\nlocal-hostname: {seed.hostname}\n"


def configdrive_meta_data(seed: SeedData) -> str:
    return json.dumps({
        "uuid": seed.instance_id, "hostname": seed.hostname, "name": seed.hostname,
        "availability_zone": "nova", "launch_index": 0,
        "public_keys": {KEY_COMMENT: seed.credentials.public_key},
    }, indent=2) + "\n"


def opennebula_context(seed: SeedData) -> str:
    """context.sh as OpenNebula writes it: one-context reads USERNAME/PASSWORD/SSH_PUBLIC_KEY, cloud-init's
    OpenNebula datasource reads USER_DATA (base64) as well."""
    c = seed.credentials
    ud = base64.b64encode(user_data(seed).encode()).decode()
    values = {
        "DISK_ID": "1", "VMID": seed.instance_id, "HOSTNAME": seed.hostname, "SET_HOSTNAME": seed.hostname,
        "NETWORK": "YES", "USERNAME": c.user, "PASSWORD": c.password, "USERNAME_SUDO": "YES",
        "USERNAME_PASSWORD_RESET": "NO", "SSH_PUBLIC_KEY": c.public_key, "USER_DATA": ud,
        "USERDATA_ENCODING": "base64", "TARGET": "hda",
    }
    lines = ["# Context variables generated by OpenNebula (ccis-workbench boot test)"]
    lines += [f"{k}='{v}'" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def seed_files(kind: str, seed: SeedData) -> dict[str, bytes]:
    """The files of a seed of *kind*, path -> content."""
    if kind == "nocloud":
        return {"meta-data": nocloud_meta_data(seed).encode(), "user-data": user_data(seed).encode()}
    if kind == "configdrive":
        return {"openstack/latest/meta_data.json": configdrive_meta_data(seed).encode(),
                "openstack/latest/user_data": user_data(seed).encode()}
    if kind == "opennebula":
        return {"context.sh": opennebula_context(seed).encode()}
    raise WorkbenchError("Unknown seed", f"{kind!r} is not a seed kind", hint=f"choose {', '.join(SEED_KINDS)}")


def _iso_name(part: str, is_dir: bool, used: set[str]) -> str:
    """An ISO 9660 level 1 name for *part* (the Rock Ridge and Joliet trees carry the real name)."""
    stem, _, ext = part.upper().partition(".")
    stem = re.sub(r"[^A-Z0-9_]", "", stem)[:8] or "F"
    ext = re.sub(r"[^A-Z0-9_]", "", ext)[:3]
    name = stem if is_dir else f"{stem}.{ext}"
    n = 1
    while name in used:
        s = f"{stem[:6]}{n:02d}"
        name = s if is_dir else f"{s}.{ext}"
        n += 1
    used.add(name)
    return name


def build_iso(label: str, files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image with Rock Ridge and Joliet names (as genisoimage -J -R makes for cloud-localds)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=label, joliet=3, rock_ridge="1.09")
    dirs: dict[str, str] = {"": ""}  # real path -> ISO path
    used: dict[str, set[str]] = {}
    for path in sorted(files):
        parts = path.split("/")
        for i in range(1, len(parts)):
            real = "/".join(parts[:i])
            if real not in dirs:
                parent = "/".join(parts[:i - 1])
                name = _iso_name(parts[i - 1], True, used.setdefault(parent, set()))
                dirs[real] = f"{dirs[parent]}/{name}"
                iso.add_directory(dirs[real], rr_name=parts[i - 1], joliet_path=f"/{real}")
        parent = "/".join(parts[:-1])
        name = _iso_name(parts[-1], False, used.setdefault(parent, set()))
        data = files[path]
        iso.add_fp(io.BytesIO(data), len(data), f"{dirs[parent]}/{name};1", rr_name=parts[-1],
                   joliet_path=f"/{path}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    data = out.getvalue()
    # a 60 KiB CD-ROM trips some probes (busybox's volume_id reads past its end and gives up); seeds made by
    # genisoimage/xorriso are a few hundred KiB: pad with zero blocks past the volume's end, which readers ignore
    return data + bytes(max(0, MIN_ISO_BYTES - len(data)))


def build_seed(kind: str, seed: SeedData) -> bytes:
    """The seed ISO of *kind* ('nocloud', 'configdrive', 'opennebula') as bytes."""
    return build_iso(VOLUME_LABELS[kind] if kind in VOLUME_LABELS else kind, seed_files(kind, seed))


def write_seed(kind: str, seed: SeedData, path: str | Path) -> Path:
    """Write the seed ISO to *path* (mode 0600: it holds the run's password)."""
    p = Path(path)
    data = build_seed(kind, seed)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return p
