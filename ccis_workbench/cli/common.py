"""Helpers shared by CLI commands: choosing a profile from arguments, JSON output, atomic writes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ccis_workbench.core.errors import WorkbenchError


def add_choice_arguments(p: argparse.ArgumentParser, *, profile_required: bool = False) -> None:
    """PROFILE (a name in profiles/ or a YAML path) or --release/--target/--overlay/--set, and --json."""
    p.add_argument("profile", nargs=None if profile_required else "?", metavar="PROFILE",
                   help="profile name (profiles/NAME.yaml) or path to a profile YAML")
    add_choice_options(p)
    add_json(p)


def add_choice_options(p: argparse.ArgumentParser) -> None:
    """--release/--target/--overlay (instead of a profile) and --set KEY=VALUE."""
    p.add_argument("--release", help="release, e.g. centos-stream-9 (instead of a profile)")
    p.add_argument("--target", help="target, e.g. openstack (instead of a profile)")
    p.add_argument("--overlay", action="append", default=[], metavar="NAME", help="overlay (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="set a variable, e.g. --set timezone=Europe/Brussels (value read as YAML)")


def import_backend(module: str) -> Any:
    """Import a libvirt backend module; a missing libvirt-python becomes a clear error, not a traceback."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "libvirt":
            raise WorkbenchError("libvirt-python is not installed", "this command talks to libvirt through "
                                 "libvirt-python", hint="pip install 'ccis-workbench[libvirt]' (needs apt: "
                                 "libvirt-dev pkg-config)") from None
        raise


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def load_catalog(args: argparse.Namespace) -> Any:
    from ccis_workbench.core.catalog import Catalog

    return Catalog.load(args.catalog)


def profile_from_args(catalog: Any, args: argparse.Namespace) -> Any:
    """A Profile from PROFILE, or from --release/--target/--overlay; --set overrides variables either way."""
    from ccis_workbench.core.compose import choice
    from ccis_workbench.core.yamlfile import load_yaml_text

    sets: dict[str, Any] = {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WorkbenchError("Bad argument", f"--set {item!r}: expected KEY=VALUE",
                                 hint="for example --set disk_size=20")
        parsed = load_yaml_text(value, f"--set {key}") if value else ""
        sets[key] = list(parsed) if isinstance(parsed, list) else parsed
    if args.profile:
        if args.release or args.target or args.overlay:
            raise WorkbenchError("Bad argument", "give a profile or --release/--target/--overlay, not both")
        profile = catalog.load_profile(args.profile)
    elif not args.release or not args.target:
        raise WorkbenchError("Missing argument", "give a PROFILE, or both --release and --target",
                             hint="see `ccis-workbench list profiles`")
    else:
        profile = choice(args.release, args.target, args.overlay, {})
    if sets:
        _check_sets(catalog, profile, sets)
        profile.variables.update(sets)
    return profile


def _check_sets(catalog: Any, profile: Any, sets: dict[str, Any]) -> None:
    """Check --set values up front so an error names the option, not the profile file."""
    from ccis_workbench.core.values import check_value

    overlays = [catalog.overlays[o] for o in profile.overlays if o in catalog.overlays]
    rules = catalog.variable_rules(overlays)
    for key, value in sets.items():
        if key not in rules:
            raise WorkbenchError("Unknown variable", f"--set {key}: not a variable of this profile",
                                 hint=f"known variables: {', '.join(sorted(rules))}")
        check_value(key, value, rules[key], f"--set {key}", 0)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write *text* to *path* atomically (see ccis_workbench.core.files.write_text_atomic)."""
    from ccis_workbench.core.files import write_text_atomic

    write_text_atomic(path, text)
