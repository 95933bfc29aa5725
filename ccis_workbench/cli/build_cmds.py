"""CLI commands for building: plan, build, gc, doctor.

`plan` imports no libvirt; `build`, `gc` and `doctor` import the libvirt backend when they run.
Exit status: 0 success, 1 the build failed / leftovers remain / doctor found problems, 2 bad input, 130 cancel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ccis_workbench.cli.common import (
    add_choice_arguments,
    add_json,
    catalog_root,
    emit_json,
    load_catalog,
    profile_from_args,
    say_on_stderr,
    setting_default,
    settings_from_args,
)
from ccis_workbench.flows.settings import ACCELS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="show what a build would do (install source, kernel command line, domain "
                       "XML, volumes, artifacts) without running anything")
    add_choice_arguments(p)
    _build_options(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("build", help="build a profile's image on libvirt with the live console, then write its "
                       "artifacts")
    add_choice_arguments(p)
    _build_options(p)
    p.add_argument("--inactivity-timeout", type=float, metavar="S",
                   help=f"fail when the guest prints nothing for S seconds ({setting_default('inactivity_timeout')})")
    p.add_argument("--total-timeout", type=float, metavar="S",
                   help=f"fail when the install runs longer than S seconds ({setting_default('total_timeout')})")
    p.add_argument("--quiet", action="store_true", help="do not copy the console to stdout")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("gc", help="list and remove leftover ccis- domains and volumes")
    _host_options(p)
    p.add_argument("--dry-run", action="store_true", help="only list")
    p.add_argument("--force", action="store_true", help="also remove what belongs to a build still running here")
    add_json(p)
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("doctor", help="check this host for builds: libvirt, pool, disk space, qemu-img, "
                       "accelerator")
    _host_options(p)
    p.add_argument("--output", help="artifact directory whose free space to check (default: the artifacts setting)")
    add_json(p)
    p.set_defaults(func=cmd_doctor)


def _host_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", help=f"libvirt URI ({setting_default('uri')})")
    p.add_argument("--pool", help=f"storage pool the workbench owns ({setting_default('pool')})")


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", metavar="URL|DIR|ISO|rehearsal",
                   help="install source (default: the release's tree URL); `rehearsal` builds the offline tree")
    p.add_argument("--accel", choices=ACCELS, help=f"accelerator ({setting_default('accel')}: KVM only when KVM "
                   "guests really run here, else TCG)")
    _host_options(p)
    p.add_argument("--network", help=f"`user` or the name of a libvirt network ({setting_default('network')})")
    p.add_argument("--memory", type=int, metavar="MIB", help=f"guest memory ({setting_default('memory_mb')})")
    p.add_argument("--vcpus", type=int, help=f"guest vCPUs ({setting_default('vcpus')})")
    p.add_argument("--disk-size", metavar="SIZE", help="disk size, e.g. 256M or 10G (default: the profile's "
                   "disk_size in GiB)")
    p.add_argument("--format", action="append", dest="formats", metavar="FMT",
                   help="artifact format (repeatable; default: the target's formats)")
    p.add_argument("--output", metavar="DIR", help=f"artifact parent directory ({setting_default('artifacts')})")
    p.add_argument("--kernel-arg", action="append", default=[], dest="kernel_args", metavar="ARG",
                   help="extra installer kernel argument (repeatable)")
    p.add_argument("--sign-key", metavar="KEY", help="OpenPGP key gpg signs CHECKSUM with (CHECKSUM.asc); "
                   "default: the sign_key setting, else unsigned")


def build_request(args: argparse.Namespace) -> Any:
    """The BuildRequest from the command line; what it does not say comes from the settings (one place)."""
    from ccis_workbench.flows.build import BuildRequest

    return BuildRequest.from_settings(
        settings_from_args(args, memory="memory_mb", sign_key="sign_key"), tree=args.tree, disk_size=args.disk_size,
        formats=args.formats, catalog_root=str(catalog_root(args).path),
        output=args.output, kernel_args=list(args.kernel_args),
        inactivity_timeout=getattr(args, "inactivity_timeout", None),
        total_timeout=getattr(args, "total_timeout", None))


def make_plan_from_args(args: argparse.Namespace, monitor: Any = None, download: bool = False) -> Any:
    """Profile -> composition -> install source -> BuildPlan, through flows.build."""
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.flows.build import plan_build

    cat = load_catalog(args)
    comp = Composer(cat).compose(profile_from_args(cat, args))
    return plan_build(comp, build_request(args), monitor, download=download)


def cmd_plan(args: argparse.Namespace) -> int:
    plan = make_plan_from_args(args, download=False)
    if args.json:
        emit_json(plan.to_dict())
    else:
        sys.stdout.write(plan.render_text())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ccis_workbench.core.monitor import PrintMonitor
    from ccis_workbench.flows.build import run_build
    from ccis_workbench.flows.signals import cancel_on_signals

    monitor = PrintMonitor(show_console=not (args.quiet or args.json))
    backend = _backend()
    # from here on a signal cancels: during planning it stops the build before any guest starts
    with cancel_on_signals(monitor.cancel_event, say_on_stderr) as stopped:
        plan = make_plan_from_args(args, monitor=monitor, download=True)
        try:
            out = run_build(plan, monitor)
        except backend.BuildFailed as exc:
            r = exc.result
            if args.json:
                emit_json({"plan": plan.build_id, **r.to_dict()})
            else:
                print(f"\nbuild {r.status}: {r.title}", file=sys.stderr)
                print(f"  {r.message}", file=sys.stderr)
                for line in r.lines:
                    print(f"  | {line}", file=sys.stderr)
                if r.hint:
                    print(f"  hint: {r.hint}", file=sys.stderr)
            if r.status == "cancelled":
                return stopped.exit_status or 130
            return 1
    if args.json:
        emit_json({"plan": plan.build_id, "status": "success", "artifact_dir": str(out),
                   "artifacts": sorted(p.name for p in out.iterdir())})
    else:
        print(f"\nbuild succeeded: {out}", file=sys.stderr)
        for p in sorted(out.iterdir()):
            print(f"  {p.name}", file=sys.stderr)
    return 0


def _backend() -> Any:
    from ccis_workbench.flows.build import libvirt_backend

    return libvirt_backend("ccis_workbench.backends.libvirt_build")


def cmd_gc(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    items = _backend().gc(s.uri, s.pool, dry_run=args.dry_run, force=args.force)
    if args.json:
        emit_json([i.to_dict() for i in items])
    elif not items:
        print("no leftovers")
    else:
        for i in items:
            state = ("removed" if i.removed else "LIVE build, kept" if i.live else
                     f"error: {i.error}" if i.error else "found")
            print(f"{i.kind:7} {i.name}  [{state}]")
    remaining = [i for i in items if not i.removed and not i.live]
    return 1 if remaining and not args.dry_run else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    # the artifact folder may not exist yet: its free space is the nearest existing folder's
    where = Path(args.output or s.artifacts).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    from ccis_workbench.flows.leftovers import remove_dead_runs

    # what runs killed on this host left in the pool goes first, and is said (a check that passed: it is fixed)
    removed = [_backend().Check("dead runs", True, line) for line in remove_dead_runs(s.uri, s.pool)]
    checks = removed + _backend().doctor(s.uri, s.pool, str(where))
    if args.json:
        emit_json([c.to_dict() for c in checks])
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("WARN" if c.severity == "warning" else "FAIL")
            print(f"[{mark}] {c.name:13} {c.message}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
    return 1 if any(not c.ok and c.severity == "error" for c in checks) else 0
