"""`ccis-workbench config`: every setting's effective value and where it came from (command line, environment,
configuration file, default), the configuration file's path, and the catalog in use."""

from __future__ import annotations

import argparse

from ccis_workbench.cli.common import add_json, catalog_root, emit_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="show each setting's value and where it comes from (option, environment, "
                       "configuration file, default), and the catalog in use")
    add_json(p)
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from ccis_workbench.flows.settings import Settings

    settings = Settings.load()
    root = catalog_root(args)
    rows = settings.rows()
    if args.json:
        emit_json({"config_file": str(settings.config_file), "config_file_exists": settings.config_file.is_file(),
                   "catalog": {"path": str(root.path), "source": root.why},
                   "settings": [{"name": n, "value": v, "source": src, "help": h} for n, v, src, h in rows]})
        return 0
    state = "" if settings.config_file.is_file() else " (not present: defaults apply)"
    print(f"configuration file: {settings.config_file}{state}")
    print(f"catalog:            {root.describe()}")
    width = max(len(n) for n, *_ in rows)
    for name, value, source, _help in rows:
        print(f"{name:<{width}}  {value!s:<24} {source}")
    return 0
