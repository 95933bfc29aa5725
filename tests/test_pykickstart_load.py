"""The lighter pykickstart.load behaves like pykickstart's own: local files, URLs (on 127.0.0.1), errors."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest


def test_core_import_does_not_pull_in_requests() -> None:
    code = ("import sys, ccis_workbench.core.compose, pykickstart.parser\n"
            "print('requests' in sys.modules, type(sys.modules['pykickstart.load']).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "module"]


def test_local_file_and_missing_file(tmp_path: Path) -> None:
    import pykickstart.load as load
    from pykickstart.errors import KickstartError

    assert load.__file__.endswith("_pykickstart_load.py")
    ks = tmp_path / "a.ks"
    ks.write_text("lang en_US.UTF-8\n")
    assert load.load_to_str(str(ks)) == "lang en_US.UTF-8\n"
    assert Path(load.load_to_file(str(ks), str(tmp_path / "b.ks"))).read_text() == "lang en_US.UTF-8\n"
    with pytest.raises(KickstartError):
        load.load_to_str(str(tmp_path / "missing.ks"))


def test_url_defers_to_pykickstart(tmp_path: Path) -> None:
    import pykickstart.load as load

    (tmp_path / "remote.ks").write_text("keyboard us\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: Quiet(*a, directory=str(tmp_path)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.ks"
        assert load.load_to_str(url) == "keyboard us\n"
    finally:
        server.shutdown()
        server.server_close()
