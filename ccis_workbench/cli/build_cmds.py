"""CLI commands for building: plan, build, gc, doctor.

`plan` imports no libvirt; `build`, `gc` and `doctor` import the libvirt backend when they run.
Exit status: 0 success, 1 the build failed / leftovers remain / doctor found problems, 2 bad input, 130 cancel.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from ccis_workbench.cli.common import (
    add_choice_arguments,
    add_json,
    emit_json,
    import_backend,
    load_catalog,
    profile_from_args,
)

DEFAULT_URI = os.environ.get("CCIS_WORKBENCH_URI", "qemu:///system")


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
    p.add_argument("--inactivity-timeout", type=float, default=300.0, metavar="S",
                   help="fail when the guest prints nothing for S seconds (default 300)")
    p.add_argument("--total-timeout", type=float, default=3600.0, metavar="S",
                   help="fail when the install runs longer than S seconds (default 3600)")
    p.add_argument("--quiet", action="store_true", help="do not copy the console to stdout")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("gc", help="list and remove leftover ccis- domains and volumes")
    p.add_argument("--uri", default=DEFAULT_URI, help=f"libvirt URI (default {DEFAULT_URI})")
    p.add_argument("--pool", default="ccis-workbench", help="storage pool (default ccis-workbench)")
    p.add_argument("--dry-run", action="store_true", help="only list")
    p.add_argument("--force", action="store_true", help="also remove what belongs to a build still running here")
    add_json(p)
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("doctor", help="check this host for builds: libvirt, pool, disk space, qemu-img, "
                       "accelerator")
    p.add_argument("--uri", default=DEFAULT_URI, help=f"libvirt URI (default {DEFAULT_URI})")
    p.add_argument("--pool", default="ccis-workbench", help="storage pool (default ccis-workbench)")
    p.add_argument("--output", default=".", help="artifact directory whose free space to check")
    add_json(p)
    p.set_defaults(func=cmd_doctor)


def _build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", metavar="URL|DIR|ISO|rehearsal",
                   help="install source (default: the release's tree URL); `rehearsal` builds the offline tree")
    p.add_argument("--accel", choices=("kvm", "tcg", "auto"), default="auto", help="accelerator (default auto)")
    p.add_argument("--uri", default=DEFAULT_URI, help=f"libvirt URI (default {DEFAULT_URI})")
    p.add_argument("--pool", default="ccis-workbench", help="storage pool the workbench owns")
    p.add_argument("--network", default="user", help="`user` (default) or the name of a libvirt network")
    p.add_argument("--memory", type=int, default=2048, metavar="MIB", help="guest memory (default 2048)")
    p.add_argument("--vcpus", type=int, default=2, help="guest vCPUs (default 2)")
    p.add_argument("--disk-size", metavar="SIZE", help="disk size, e.g. 256M or 10G (default: the profile's "
                   "disk_size in GiB)")
    p.add_argument("--format", action="append", dest="formats", metavar="FMT",
                   help="artifact format (repeatable; default: the target's formats)")
    p.add_argument("--output", default="artifacts", metavar="DIR", help="artifact parent directory")
    p.add_argument("--kernel-arg", action="append", default=[], dest="kernel_args", metavar="ARG",
                   help="extra installer kernel argument (repeatable)")


def _source(args: argparse.Namespace, comp: Any, monitor: Any, download: bool) -> Any:
    from ccis_workbench.core import installsource

    arch = str(comp.variables.get("arch", "x86_64"))
    spec = args.tree or comp.release.tree_url(arch)
    if spec == "rehearsal":
        from ccis_workbench.rehearsal.tree import build_tree

        spec = str(build_tree(monitor=monitor))
    return installsource.resolve_for_plan(spec, arch, monitor, download=download)


def make_plan_from_args(args: argparse.Namespace, monitor: Any = None, download: bool = False) -> Any:
    """Profile -> composition -> install source -> BuildPlan (shared by plan, build and the TUI)."""
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.monitor import Monitor
    from ccis_workbench.core.plan import PlanOptions, make_plan, parse_size_mb

    mon = monitor or Monitor()
    cat = load_catalog(args)
    profile = profile_from_args(cat, args)
    comp = Composer(cat).compose(profile)
    source = _source(args, comp, mon, download)
    opts = PlanOptions(uri=args.uri, accel=args.accel, memory_mb=args.memory, vcpus=args.vcpus,
                       disk_size_mb=parse_size_mb(args.disk_size) if args.disk_size else None,
                       network=args.network, pool=args.pool, extra_kernel_args=list(args.kernel_args),
                       formats=args.formats, output_dir=args.output,
                       inactivity_timeout=getattr(args, "inactivity_timeout", 300.0),
                       total_timeout=getattr(args, "total_timeout", 3600.0))
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    plan = make_plan(comp, profile.name, source, opts, kvm_available=kvm,
                     arch=str(comp.variables.get("arch", "x86_64")))
    plan.notes.extend(source.notes)
    return plan


def cmd_plan(args: argparse.Namespace) -> int:
    plan = make_plan_from_args(args, download=False)
    if args.json:
        emit_json(plan.to_dict())
    else:
        sys.stdout.write(plan.render_text())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ccis_workbench.core.monitor import PrintMonitor

    monitor = PrintMonitor(show_console=not (args.quiet or args.json))
    plan = make_plan_from_args(args, monitor=monitor, download=True)
    backend = _backend()
    Build, BuildFailed = backend.Build, backend.BuildFailed
    interrupts = 0

    def on_sigint(_sig: int, _frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        print("\ncancelling: destroying the domain and removing its volumes (Ctrl-C again to abort)",
              file=sys.stderr)
        monitor.cancel_event.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        out = Build(plan, monitor).run()
    except BuildFailed as exc:
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
        return 130 if r.status == "cancelled" else 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        emit_json({"plan": plan.build_id, "status": "success", "artifact_dir": str(out),
                   "artifacts": sorted(p.name for p in out.iterdir())})
    else:
        print(f"\nbuild succeeded: {out}", file=sys.stderr)
        for p in sorted(out.iterdir()):
            print(f"  {p.name}", file=sys.stderr)
    return 0


def _backend() -> Any:
    return import_backend("ccis_workbench.backends.libvirt_build")


def cmd_gc(args: argparse.Namespace) -> int:
    items = _backend().gc(args.uri, args.pool, dry_run=args.dry_run, force=args.force)
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
    checks = _backend().doctor(args.uri, args.pool, args.output)
    if args.json:
        emit_json([c.to_dict() for c in checks])
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("WARN" if c.severity == "warning" else "FAIL")
            print(f"[{mark}] {c.name:13} {c.message}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
    return 1 if any(not c.ok and c.severity == "error" for c in checks) else 0
