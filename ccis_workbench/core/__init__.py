"""The workbench core: catalog, compose, diff, lint.

Nothing under this package imports textual or libvirt; tests/test_import_hygiene.py checks it.
"""
