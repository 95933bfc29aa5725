"""`ccis-workbench config`: every setting's effective value and where it came from (command line, environment,
configuration file, default), the configuration file's path, and the catalog in use. `ccis-workbench init DIR`:
a new catalog of one's own."""

from __future__ import annotations

import argparse

from ccis_workbench.cli.common import add_json, catalog_root, emit_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="show each setting's value and where it comes from (option, environment, "
                       "configuration file, default), and the catalog in use")
    add_json(p)
    p.set_defaults(func=cmd_config)
    register_init(sub)


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


def register_init(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="create a new catalog (a copy of the one that came with the workbench, or a "
                       "minimal one) as a git repository with a first commit")
    p.add_argument("directory", metavar="DIR", help="a new or empty folder")
    p.add_argument("--minimal", action="store_true", help="releases, baselines and the test spec, plus one example "
                   "target (openstack), one overlay (epel) and one profile")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ccis_workbench.flows.init_catalog import init_catalog
    from ccis_workbench.flows.settings import shipped_catalog

    dest = Path(args.directory)
    source = Path(args.catalog) if args.catalog else shipped_catalog()
    copied = init_catalog(source, dest, minimal=args.minimal)
    print(f"new catalog in {dest.resolve()} (from {source}): {', '.join(copied)}")
    print(f"a git repository with a first commit; start the workbench there: cd {dest} && ccis-workbench")
    return 0
