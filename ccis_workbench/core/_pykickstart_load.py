"""A lighter `pykickstart.load`: the same functions, with `requests` imported only when a URL is loaded.

pykickstart's load module imports requests (with urllib3 and http.client: about 100 ms, a third of a cold
`ccis-workbench render`) at import time, only to fetch kickstarts given as URLs, which the workbench never asks
it to do. This module is registered as `pykickstart.load` before pykickstart is imported; local files are read
exactly as pykickstart reads them, and a URL loads the real module under another name and defers to it, so no
behaviour is lost. Removed the day pykickstart imports requests lazily itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from typing import Any

SSL_VERIFY = True


def is_url(location: str) -> bool:
    return "://" in location  # RFC 3986, as pykickstart.load.is_url


def _real() -> Any:
    """pykickstart's own load module, loaded under a private name on first use."""
    name = "ccis_workbench.core._pykickstart_load_real"
    if name in sys.modules:
        return sys.modules[name]
    import pykickstart

    path = f"{pykickstart.__path__[0]}/load.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(module, "SSL_VERIFY", SSL_VERIFY)  # noqa: B010 - the real module's own global
    return module


def _load_file(filename: str) -> str:
    from pykickstart.errors import KickstartError
    from pykickstart.i18n import _

    try:
        with open(filename, "rb") as fh:
            return fh.read().decode("utf-8")
    except OSError as e:
        raise KickstartError(_("Error opening file: %s") % str(e)) from None


def load_to_str(location: str) -> str:
    if is_url(location):
        return str(_real().load_to_str(location))
    return _load_file(location)


def load_to_file(location: str, destination: str) -> str:
    if is_url(location):
        return str(_real().load_to_file(location, destination))
    from pykickstart.errors import KickstartError
    from pykickstart.i18n import _

    try:
        shutil.copyfile(location, destination)
    except OSError as e:
        raise KickstartError(_("Error copying file: %s") % str(e)) from None
    return destination


def install() -> None:
    """Register this module as `pykickstart.load` unless pykickstart's own is already imported."""
    if "pykickstart.load" in sys.modules:
        return
    import pykickstart

    shim = types.ModuleType("pykickstart.load", __doc__)
    for name in ("SSL_VERIFY", "is_url", "load_to_str", "load_to_file", "_load_file"):
        setattr(shim, name, globals()[name])
    shim.__file__ = __file__
    sys.modules["pykickstart.load"] = shim
    pykickstart.load = shim  # type: ignore[attr-defined]
