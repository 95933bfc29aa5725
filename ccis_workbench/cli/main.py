"""`ccis-workbench`: the CLI entry point.

Each command lives in a module of this package that defines `register(subparsers)`; the module's handler
imports what it needs when it runs, so `render` never imports textual or libvirt. A command line naming a
command builds the parser from that command's module alone (COMMAND_OWNERS), so a cold `render` imports none of
the other commands' modules either; `--help`, no command or an unknown one builds the whole parser. With no
command, the TUI starts. Exit status: 0 clean, 1 findings (lint findings, a diff, a failed check), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ccis_workbench import __version__

#: Command modules, in the order their commands appear in --help.
COMMAND_MODULES = ("ccis_workbench.cli.compose_cmds", "ccis_workbench.cli.build_cmds", "ccis_workbench.cli.test_cmds",
                   "ccis_workbench.cli.propose_cmds", "ccis_workbench.cli.config_cmds",
                   "ccis_workbench.cli.verify_cmds", "ccis_workbench.cli.rebuild_cmds",
                   "ccis_workbench.cli.matrix_cmds",
                   "ccis_workbench.cli.completion_cmds")
#: The module that registers each command (tests/test_import_hygiene.py checks it against COMMAND_MODULES).
COMMAND_OWNERS = {
    **dict.fromkeys(("list", "render", "blame", "diff", "lint"), "ccis_workbench.cli.compose_cmds"),
    **dict.fromkeys(("plan", "build", "gc", "doctor"), "ccis_workbench.cli.build_cmds"),
    **dict.fromkeys(("spec", "boot-test"), "ccis_workbench.cli.test_cmds"),
    **dict.fromkeys(("propose", "koji"), "ccis_workbench.cli.propose_cmds"),
    **dict.fromkeys(("config", "init"), "ccis_workbench.cli.config_cmds"),
    **dict.fromkeys(("verify", "publish"), "ccis_workbench.cli.verify_cmds"),
    "rebuild-check": "ccis_workbench.cli.rebuild_cmds",
    "matrix": "ccis_workbench.cli.matrix_cmds",
    "completion": "ccis_workbench.cli.completion_cmds",
}


def command_in(argv: Sequence[str]) -> str | None:
    """The command an argument list names (the first word that is not a top-level option or its value), when it
    is one of COMMAND_OWNERS; "" when it names none and asks for no help (the TUI starts: no command module is
    needed); None otherwise (--help or --version first, or an unknown word: the whole parser answers)."""
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--catalog":
            i += 2
            continue
        if a.startswith("--catalog="):
            i += 1
            continue
        if a.startswith("-"):
            return None  # --help, --version or a mistake: the whole parser answers
        return a if a in COMMAND_OWNERS else None
    return ""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; *only*: a command name, to register just the module that owns it ("": no command)."""
    parser = argparse.ArgumentParser(
        prog="ccis-workbench",
        description="Shape, build and test CentOS cloud images. Without a command, the terminal UI starts.")
    parser.add_argument("--version", action="version", version=f"ccis-workbench {__version__}")
    parser.add_argument("--catalog", metavar="DIR", help="catalog root holding kickstarts/ and profiles/ "
                        "(default: the first such directory at or above the working directory, else "
                        "$CCIS_WORKBENCH_ROOT, else the configuration file's `catalog`, else the shipped one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = COMMAND_MODULES if only is None else [COMMAND_OWNERS[only]] if only in COMMAND_OWNERS else []
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def print_error(exc: BaseException, as_json: bool) -> None:
    from ccis_workbench.core.errors import WorkbenchError

    if as_json and isinstance(exc, WorkbenchError):
        import json

        print(json.dumps(exc.to_dict(), indent=2))
        return
    if isinstance(exc, WorkbenchError):
        where = f"{exc.location}: " if exc.location else ""
        lines = [f"error: {where}{exc.title}", f"  {exc.message}"]
        if exc.hint:
            lines.append(f"  hint: {exc.hint}")
        print("\n".join(lines), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    from ccis_workbench.core.errors import WorkbenchError

    parser = build_parser(command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.command is None:
        try:
            from ccis_workbench.ui.app import run_app
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ccis_workbench.ui"):
                parser.print_help()
                return 0
            raise
        from ccis_workbench.cli.common import catalog_root

        try:
            root = catalog_root(args)
        except WorkbenchError as exc:
            print_error(exc, False)
            return exc.exit_status
        return run_app(catalog_root=str(root.path))
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print_error(exc, getattr(args, "json", False))
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
