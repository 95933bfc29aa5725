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


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


#: Options whose value is a setting of the same meaning in every command (flows.settings).
ARG_SETTINGS = {"uri": "uri", "accel": "accel", "pool": "pool", "network": "network", "vcpus": "vcpus"}


def settings_from_args(args: argparse.Namespace, **more: str) -> Any:
    """The effective settings: the command line's options (ARG_SETTINGS, plus *more* as option=setting) over the
    environment, the configuration file and the defaults."""
    from ccis_workbench.flows.settings import Settings

    mapping = {**ARG_SETTINGS, **more}
    return Settings.load({setting: getattr(args, arg, None) for arg, setting in mapping.items()})


def setting_default(name: str) -> str:
    """'default X' for --help, where X is the built-in default (the environment or config may change it)."""
    from ccis_workbench.flows.settings import SETTINGS

    return f"default {SETTINGS[name].default}; see `ccis-workbench config`"


def say_on_stderr(text: str) -> None:
    """Print a line on stderr; a terminal that went away (SIGHUP) must not stop the cleanup."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def catalog_root(args: argparse.Namespace) -> Any:
    """Which catalog is in use and why (flows.settings: --catalog, the working directory, $CCIS_WORKBENCH_ROOT,
    the configuration file, the shipped catalog)."""
    from ccis_workbench.flows.settings import Settings

    return Settings.load().catalog_root(getattr(args, "catalog", None))


def load_catalog(args: argparse.Namespace, *, lazy: bool = False) -> Any:
    """The catalog in use; when it is not the one the working directory is in (nor --catalog), say which, on
    stderr, so that a command run outside a catalog never works on a surprising one silently. *lazy*: each layer
    is read when first used (core.catalog.LayerTable), for commands that compose one profile."""
    from ccis_workbench.core.catalog import Catalog

    root = catalog_root(args)
    if root.why not in ("working directory", "--catalog"):
        say_on_stderr(f"catalog: {root.describe()}")
    return Catalog.load(root.path, lazy=lazy)


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
