"""The workbench core: catalog, compose, diff, lint.

Nothing under this package imports textual or libvirt; tests/test_import_hygiene.py checks it.
"""

from ccis_workbench.core import _pykickstart_load

_pykickstart_load.install()
