"""A tree server that cuts the kernel or initrd short (closes the connection mid-body after a Content-Length that
promises more): the download is retried with a bounded backoff, resumed with a Range request when the server
honours them, and nothing corrupt is ever kept in the cache. A real HTTP server on 127.0.0.1 serving a copy of
the rehearsal tree; the fault is injected by the server, outside the workbench's code."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.installsource import from_url
from ccis_workbench.core.monitor import RecordingMonitor

REPO = Path(__file__).resolve().parents[2]


class _Flaky(http.server.ThreadingHTTPServer):
    """Serves *root*; the first *cuts* GETs of a file ending in *victim* send half the body and close."""

    def __init__(self, root: Path, victim: str, cuts: int, ranges: bool) -> None:
        self.root, self.victim, self.cuts, self.ranges = root, victim, cuts, ranges
        self.requests: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Flaky

    def log_message(self, *_a: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = (srv.root / self.path.lstrip("/")).resolve()
        if not path.is_relative_to(srv.root) or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range", "")
        srv.requests.append((self.path, rng))
        start = 0
        if srv.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.endswith(srv.victim) and srv.cuts != 0:
            srv.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def _serve(root: Path, victim: str, cuts: int, ranges: bool = True) -> Iterator[tuple[str, _Flaky]]:
    srv = _Flaky(root.resolve(), victim, cuts, ranges)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/", srv
    finally:
        srv.shutdown()
        srv.server_close()


def _cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize("ranges", [True, False])
def test_cut_once_then_good_is_retried_and_resumed(rehearsal_tree: Path, tmp_path: Path, ranges: bool) -> None:
    mon = RecordingMonitor()
    for url, srv in _serve(rehearsal_tree, "initrd.img", cuts=1, ranges=ranges):
        src = from_url(url, monitor=mon, cache=tmp_path / "cache")
        assert src.initrd.read_bytes() == (rehearsal_tree / "images/pxeboot/initrd.img").read_bytes()
        warnings = [m for s, m in mon.notes() if s == "warning" and "initrd.img" in m]
        assert warnings and f"{url}images/pxeboot/initrd.img" in warnings[0] and "retrying" in warnings[0]
        tries = [r for p, r in srv.requests if p.endswith("initrd.img")]
        assert len(tries) == 2
        assert tries[1].startswith("bytes=") and tries[1] != "bytes=0-"  # resumed where it was cut
        if ranges:
            assert "resuming at byte" in warnings[0]
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_always_cut_is_a_clear_error_and_nothing_is_cached(rehearsal_tree: Path, tmp_path: Path) -> None:
    for url, srv in _serve(rehearsal_tree, "vmlinuz", cuts=-1):
        with pytest.raises(WorkbenchError) as err:
            from_url(url, monitor=RecordingMonitor(), cache=tmp_path / "cache")
        assert f"{url}images/pxeboot/vmlinuz" in str(err.value) and "after 3 tries" in str(err.value)
        assert len([p for p, _ in srv.requests if p.endswith("vmlinuz")]) == 3
    assert not [p for p in _cache_files(tmp_path / "cache") if "vmlinuz" in p.name]


@pytest.mark.libvirt
def test_cli_build_from_a_dying_source_fails_plainly(rehearsal_tree: Path, tmp_path: Path,
                                                     libvirt_uri: str) -> None:
    for url, _srv in _serve(rehearsal_tree, "vmlinuz", cuts=-1):
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
        argv = [sys.executable, "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", url, "--output",
                str(tmp_path / "out"), "--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--quiet"]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert done.returncode in (1, 2), done.stderr[-2000:]
        assert f"{url}images/pxeboot/vmlinuz" in done.stderr and "after 3 tries" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not [p for p in _cache_files(tmp_path / "cache") if "vmlinuz" in p.name]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
