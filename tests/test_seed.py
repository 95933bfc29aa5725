"""Seeds and per-run credentials: the ISOs are read back with pycdlib; user-data passes cloud-init's own schema."""

from __future__ import annotations

import base64
import io
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pycdlib
import pytest
import yaml

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.seed import (
    KEY_COMMENT,
    REDACTED,
    SEED_KINDS,
    SeedData,
    build_seed,
    make_credentials,
    new_instance_id,
    user_data,
    write_seed,
)


@pytest.fixture
def creds(tmp_path: Path):
    c = make_credentials(tmp_root=tmp_path)
    yield c
    c.cleanup()


@pytest.fixture
def seed(creds) -> SeedData:
    return SeedData(new_instance_id(), "ccis-test-host", creds)


def _read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    """Volume label and every file by its Rock Ridge path, read back with pycdlib."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    label = iso.pvd.volume_identifier.decode().strip()
    files: dict[str, bytes] = {}
    for dirname, _dirs, names in iso.walk(rr_path="/"):
        for name in names:
            path = f"{dirname.rstrip('/')}/{name}"
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=path)
            files[path.lstrip("/")] = out.getvalue()
    joliet = set()
    for dirname, _dirs, names in iso.walk(joliet_path="/"):
        joliet |= {f"{dirname.rstrip('/')}/{n}".lstrip("/") for n in names}
    iso.close()
    assert joliet == set(files), "Joliet and Rock Ridge trees name the same files"
    return label, files


def test_credentials_are_random_private_and_cleaned(tmp_path: Path) -> None:
    a = make_credentials(tmp_root=tmp_path)
    b = make_credentials(tmp_root=tmp_path)
    try:
        assert a.password != b.password and a.user != b.user and a.public_key != b.public_key
        assert len(a.password) >= 20 and a.password.isalnum()
        assert a.public_key.startswith("ssh-ed25519 ") and a.public_key.endswith(KEY_COMMENT)
        assert stat.S_IMODE(a.workdir.stat().st_mode) == 0o700
        assert "PRIVATE KEY" in a.private_key.read_text()
        assert a.password not in repr(a) and REDACTED in repr(a)
        # the private key's body counts as a secret too
        body = a.private_key.read_text().splitlines()[1]
        assert a.redact(f"login {a.password} key {body}") == f"login {REDACTED} key {REDACTED}"
    finally:
        a.cleanup()
        b.cleanup()
    assert not a.workdir.exists() and not b.workdir.exists()


def test_credentials_context_manager_removes_the_key(tmp_path: Path) -> None:
    with make_credentials(user="tester", tmp_root=tmp_path) as c:
        assert c.user == "tester" and c.private_key.exists()
    assert not c.workdir.exists()


def test_bad_user_hostname_and_instance_id_are_refused(creds) -> None:
    with pytest.raises(WorkbenchError):
        make_credentials(user="Root;rm")
    with pytest.raises(WorkbenchError):
        SeedData("iid\nx", "host", creds)
    with pytest.raises(WorkbenchError):
        SeedData("iid-1", "bad_host!", creds)


def test_nocloud_seed_reads_back(seed: SeedData) -> None:
    label, files = _read_iso(build_seed("nocloud", seed))
    assert label == "cidata"
    assert set(files) == {"meta-data", "user-data"}
    meta = yaml.safe_load(files["meta-data"])
    assert meta == {"instance-id": seed.instance_id, "local-hostname": "ccis-test-host"}
    text = files["user-data"].decode()
    assert text.startswith("#cloud-config\n")
    ud = yaml.safe_load(text)
    c = seed.credentials
    assert ud["user"]["name"] == c.user and ud["user"]["lock_passwd"] is False
    assert ud["user"]["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert ud["password"] == c.password and ud["ssh_authorized_keys"] == [c.public_key]
    assert ud["chpasswd"] == {"expire": False} and ud["hostname"] == "ccis-test-host"


def test_legacy_user_data_for_the_rehearsal_reader(creds) -> None:
    """The rehearsal image's reader takes top-level `user: NAME` and `password: PW` lines only."""
    text = user_data(SeedData("iid-1", "h", creds, legacy=True))
    lines = text.splitlines()
    assert f"user: {creds.user}" in lines and f"password: {creds.password}" in lines
    assert yaml.safe_load(text)["user"] == creds.user


def test_configdrive_seed_reads_back(seed: SeedData) -> None:
    label, files = _read_iso(build_seed("configdrive", seed))
    assert label == "config-2"
    assert set(files) == {"openstack/latest/meta_data.json", "openstack/latest/user_data"}
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == seed.instance_id and meta["hostname"] == "ccis-test-host"
    assert list(meta["public_keys"].values()) == [seed.credentials.public_key]
    assert files["openstack/latest/user_data"].decode() == user_data(seed)


def test_opennebula_seed_reads_back_and_parses_in_a_shell(seed: SeedData, tmp_path: Path) -> None:
    label, files = _read_iso(build_seed("opennebula", seed))
    assert label == "CONTEXT" and set(files) == {"context.sh"}
    ctx = tmp_path / "context.sh"
    ctx.write_bytes(files["context.sh"])
    # one-context and cloud-init both source it with a shell: it must parse and give these values back
    out = subprocess.run(["sh", "-c", '. "$1"; printf "%s\\n" "$USERNAME" "$VMID" "$USER_DATA"', "sh", str(ctx)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == seed.credentials.user and out[1] == seed.instance_id
    assert base64.b64decode(out[2]).decode() == user_data(seed)


def test_write_seed_is_private(seed: SeedData, tmp_path: Path) -> None:
    p = write_seed("nocloud", seed, tmp_path / "seed.iso")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert _read_iso(p.read_bytes())[0] == "cidata"


def test_unknown_seed_kind(seed: SeedData) -> None:
    with pytest.raises(WorkbenchError, match="not a seed kind"):
        build_seed("floppy", seed)
    assert SEED_KINDS == ("nocloud", "configdrive", "opennebula")


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed (apt-get install "
                    "cloud-init) to run its schema check")
def test_user_data_passes_cloud_init_schema(seed: SeedData, tmp_path: Path) -> None:
    ud = tmp_path / "user-data"
    ud.write_text(user_data(seed))
    res = subprocess.run(["cloud-init", "schema", "--config-file", str(ud)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Valid cloud-config" in res.stdout
    # and the schema check is not a rubber stamp: a wrong type is refused
    ud.write_text(user_data(seed).replace("ssh_pwauth: true", "ssh_pwauth: [1, 2]"))
    bad = subprocess.run(["cloud-init", "schema", "--config-file", str(ud)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0, bad.stdout
