"""`ccis-workbench rebuild-check ARTIFACT_DIR`: build the same inputs again and compare (exit status: 0 identical,
1 differences, each listed with its cause, 2 bad input, 130 cancelled)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccis_workbench.cli.common import add_json, catalog_root, emit_json, say_on_stderr, settings_from_args
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.flows.settings import ACCELS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rebuild-check", help="build an artifact folder's inputs again (its manifest.json) into a "
                       "temporary folder and compare: artifact sha256s, then what differs inside the disk image, "
                       "with the cause (exit 1 on a difference)")
    p.add_argument("artifact_dir", metavar="ARTIFACT_DIR")
    p.add_argument("--accel", choices=ACCELS, help="accelerator for the rebuild (default: the one the build used)")
    p.add_argument("--uri", help="libvirt URI (default: the uri setting)")
    p.add_argument("--pool", help="storage pool (default: the pool setting)")
    p.add_argument("--memory", type=int, metavar="MIB", help="guest memory (default: the memory_mb setting)")
    p.add_argument("--quiet", action="store_true", help="do not copy the console to stdout")
    add_json(p)
    p.set_defaults(func=cmd_rebuild_check)


def cmd_rebuild_check(args: argparse.Namespace) -> int:
    from ccis_workbench.core.monitor import PrintMonitor
    from ccis_workbench.flows.build import BuildRequest
    from ccis_workbench.flows.rebuild_check import rebuild_check
    from ccis_workbench.flows.signals import cancel_on_signals

    folder = Path(args.artifact_dir)
    settings = settings_from_args(args, memory="memory_mb")
    accel = args.accel or "auto"  # auto: the accelerator the build used
    request = BuildRequest.from_settings(settings, accel=accel)
    monitor = PrintMonitor(show_console=not (args.quiet or args.json))
    with cancel_on_signals(monitor.cancel_event, say_on_stderr) as stopped:
        try:
            report = rebuild_check(folder, catalog_root=Path(catalog_root(args).path), request=request,
                                   monitor=monitor)
        except WorkbenchError as exc:
            result = getattr(exc, "result", None)  # a BuildFailed: how the rebuild ended
            if getattr(result, "status", None) == "cancelled":
                say_on_stderr("rebuild cancelled: its domain and volumes were removed")
                return stopped.exit_status or 130
            raise
    if args.json:
        emit_json(report.to_dict())
    else:
        sys.stdout.write(report.render())
    return 0 if report.identical else 1
