"""The one libvirt connection module (backends/libvirt_session.py) on the real libvirtd: the pool, volumes whose
names need escaping in XML, upload and download streams, and cleanup that removes every volume it made, also
when the code using it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccis_workbench.core.plan import new_build_id
from tests.fixtures_libvirt import left_behind

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt]


def test_volume_xml_escapes_names_and_paths() -> None:
    from ccis_workbench.backends.libvirt_session import volume_xml

    xml = volume_xml("a<b>&'c\".raw", "raw", 10, backing="/x/&y.qcow2", backing_format="qcow2")
    assert "<name>a&lt;b&gt;&amp;'c\".raw</name>" in xml
    assert "<path>/x/&amp;y.qcow2</path>" in xml and '<format type="qcow2"/>' in xml


def test_session_round_trip_and_cleanup(libvirt_uri: str, tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_session import Session

    prefix = f"ccis-session-{new_build_id()}"
    data = bytes(range(256)) * 4096 + b"tail"
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with Session(libvirt_uri) as s:
        odd = s.create_volume(f"{prefix}-a&b'c.raw", "raw", len(data))
        s.upload(odd, src)
        seed = s.create_volume(f"{prefix}-seed.iso", "raw", 4, mode="0600")
        s.upload(seed, b"seed")
        s.download(f"{prefix}-a&b'c.raw", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == data
        assert sorted(left_behind(libvirt_uri, prefix)) == [f"{prefix}-a&b'c.raw", f"{prefix}-seed.iso"]
    assert left_behind(libvirt_uri, prefix) == []


def test_cleanup_runs_when_the_caller_fails(libvirt_uri: str) -> None:
    from ccis_workbench.backends.libvirt_session import Session
    from ccis_workbench.core.errors import WorkbenchError

    prefix = f"ccis-session-{new_build_id()}"
    with pytest.raises(WorkbenchError, match="Cannot create the disk"):
        with Session(libvirt_uri) as s:
            s.create_volume(f"{prefix}-disk.qcow2", "qcow2", 1 << 20)
            s.create_volume(f"{prefix}-disk.qcow2", "qcow2", 1 << 20, what="the disk")  # exists: libvirt refuses
    assert left_behind(libvirt_uri, prefix) == []
