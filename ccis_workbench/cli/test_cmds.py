"""CLI commands of the image test spec: `spec PROFILE` (read it without booting) and `boot-test ARTIFACT|PROFILE`.

`spec` imports only the core. `boot-test` imports the libvirt backend when it runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

from ccis_workbench.cli.common import (
    add_choice_arguments,
    add_choice_options,
    emit_json,
    import_backend,
    load_catalog,
    profile_from_args,
)
from ccis_workbench.core.errors import WorkbenchError

GROUP_TITLES = {"spec": "every image (kickstarts/testspec.yaml)", "baseline": "release baseline",
                "target": "target", "overlay": "overlays", "profile": "profile", "derived": "derived from the "
                "merged kickstart"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("spec", help="print the boot-test checks that apply to a profile (nothing boots)")
    add_choice_arguments(p)
    _selection_arguments(p)
    p.add_argument("--commands", action="store_true", help="print each check's full command")
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("boot-test", help="boot an image on libvirt with a seed for its target and run the checks; "
                       "container images (rootfs tar) are checked without booting (exit 1 when a check fails)")
    p.add_argument("image", metavar="ARTIFACT|PROFILE",
                   help="a disk image (qcow2/raw), a Vagrant box, a GCE tar.gz, a container rootfs tar, an artifact "
                        "directory with manifest.json, or a profile whose latest artifact in --artifacts is tested")
    p.add_argument("--profile", dest="spec_profile", metavar="PROFILE",
                   help="the profile whose checks apply (default: the artifact's manifest.json)")
    add_choice_options(p)
    _selection_arguments(p)
    p.add_argument("--seed", choices=("auto", "nocloud", "configdrive", "opennebula", "none"), default="auto",
                   help="the seed given to the guest (default: what the target expects)")
    p.add_argument("--artifacts", default="artifacts", metavar="DIR",
                   help="where builds put their artifacts (to find a PROFILE's latest image)")
    p.add_argument("--uri", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    p.add_argument("--accel", choices=("kvm", "tcg", "auto"), default="auto", help="accelerator (default auto)")
    p.add_argument("--memory", type=int, default=1024, metavar="MiB", help="guest memory (default 1024)")
    p.add_argument("--grow", type=int, default=1024, metavar="MiB",
                   help="the test disk is this much larger than the image (default 1024), so growing the root "
                        "file system is tested")
    p.add_argument("--login-timeout", type=float, default=600, metavar="S",
                   help="seconds to wait for the login prompt (default 600)")
    p.add_argument("--inactivity-timeout", type=float, default=300, metavar="S",
                   help="seconds of console silence before giving up (default 300)")
    p.add_argument("--keep-on-failure", action="store_true",
                   help="keep the guest running when a check fails, and print how to attach to it")
    p.add_argument("--container-runner", choices=("auto", "podman", "chroot"), default="auto",
                   help="for container images: podman, or unshare + chroot of the unpacked tar (default auto: podman "
                        "when it can run a container here)")
    p.add_argument("--workdir", metavar="DIR",
                   help="where boxes, GCE tars and (for the chroot runner) rootfs tars are unpacked (default: the "
                        "system's temporary directory)")
    p.add_argument("-o", "--output", metavar="DIR", help="where the report goes (default: beside the artifact, "
                   "else ./boot-test-ID)")
    p.add_argument("--quiet", action="store_true", help="do not stream the console")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.set_defaults(func=cmd_boot_test)


def _selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=[], metavar="ID",
                   help="run only checks whose id matches (glob, repeatable)")
    p.add_argument("--skip", action="append", default=[], metavar="ID", help="skip checks whose id matches (glob)")
    p.add_argument("--rehearsal", action="store_true",
                   help="only the checks the rehearsal image can answer (the spec's `rehearsal` list)")


# -- spec ------------------------------------------------------------------------------------------------------

def plan_for_profile(cat: Any, profile: Any, args: argparse.Namespace) -> Any:
    """Compose *profile* and select its checks with the --only/--skip/--rehearsal options."""
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.testspec import filter_plan, load_spec, select_checks

    comp = Composer(cat).compose(profile)
    plan = select_checks(load_spec(cat.root), comp, rehearsal=getattr(args, "rehearsal", False))
    return comp, filter_plan(plan, args.only, args.skip)


def cmd_spec(args: argparse.Namespace) -> int:
    cat = load_catalog(args)
    profile = profile_from_args(cat, args)
    _, plan = plan_for_profile(cat, profile, args)
    if args.json:
        emit_json(plan.to_dict())
        return 0
    sys.stdout.write(render_plan(plan, commands=args.commands))
    return 0


def render_plan(plan: Any, *, commands: bool = False, width: int = 118) -> str:
    """The checks of a plan as a reviewer reads them, grouped by where they come from."""
    from ccis_workbench.core.testspec import GROUPS, expectation_text

    counts = plan.group_counts()
    lines = [f"Boot-test checks for {plan.profile}: {plan.release}, target {plan.target or '(none)'}, overlays: "
             f"{', '.join(plan.overlays) or 'none'}",
             (f"first-boot agent {plan.agent}, seed {plan.seed}" if plan.context == "vm" else
              "checked as a container (the rootfs tar runs in podman or a chroot, nothing boots)")
             + f"; {len(plan.selected)} checks ("
             + ", ".join(f"{counts[g]} {g}" for g in GROUPS) + ")"]
    for group in GROUPS:
        members = [s for s in plan.selected if s.group == group]
        if not members:
            continue
        lines += ["", f"== {GROUP_TITLES[group]} ({len(members)})"]
        for s in members:
            c = s.check
            lines.append(f"{c.id}")
            lines += textwrap.wrap(c.description, width, initial_indent="    ", subsequent_indent="    ")
            cmd = c.command if commands or len(c.command) <= width - 6 else c.command[:width - 9] + "..."
            lines.append(f"    $ {cmd}")
            scope = []
            if c.releases:
                scope.append(f"releases {', '.join(c.releases)}")
            if c.targets:
                scope.append(f"targets {', '.join(c.targets)}")
            lines.append(f"    expect {expectation_text(c)}; timeout {c.timeout}s"
                         + (f"; {'; '.join(scope)}" if scope else "")
                         + (f"  [{c.origin}]" if c.origin else ""))
    if plan.replaced:
        lines += ["", "Replaced (a later layer redefines the check):"]
        lines += [f"  {new.id}: {old.origin} -> {new.origin}" for old, new in plan.replaced]
    if plan.skipped:
        lines += ["", f"Not applicable here ({len(plan.skipped)}):"]
        lines += [f"  {c.id}: {why}" for c, why in plan.skipped]
    return "\n".join(lines) + "\n"


# -- boot-test -------------------------------------------------------------------------------------------------

def cmd_boot_test(args: argparse.Namespace) -> int:
    from ccis_workbench.backends.artifact_test import check_kind, run_artifact_test
    from ccis_workbench.backends.container_test import ContainerTestOptions
    from ccis_workbench.core.monitor import PrintMonitor
    from ccis_workbench.core.report import render_summary, write_reports
    from ccis_workbench.core.testimage import seed_for

    cat = load_catalog(args)
    image, manifest = resolve_image(args.image, cat, Path(args.artifacts))
    profile = _profile_for(cat, args, manifest)
    comp, plan = plan_for_profile(cat, profile, _with_rehearsal(args, manifest))
    kind = check_kind(image, plan, profile.name)
    boot = None
    if kind != "rootfs":
        boottest = import_backend("ccis_workbench.backends.boottest")
        boot = boottest.BootTestOptions(
            uri=args.uri, accel=args.accel, memory_mb=args.memory, grow_mib=args.grow,
            login_timeout=args.login_timeout, inactivity_timeout=args.inactivity_timeout,
            keep_on_failure=args.keep_on_failure, seed=seed_for(plan, args.seed, bool(args.rehearsal)),
            hostname=_hostname(profile), rehearsal=bool(args.rehearsal))
    monitor = PrintMonitor(show_console=not args.quiet and not args.json)
    # SIGTERM (a CI timeout, `kill`) cancels like Ctrl-C: the guest (or container) and its volumes are removed
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_artifact_test(image, comp, plan, monitor, label=profile.name, boot=boot,
                                   container=ContainerTestOptions(runner=args.container_runner, workdir=args.workdir),
                                   workdir=args.workdir)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out_dir = Path(args.output) if args.output else _default_output(image, result.run_id)
    paths = write_reports(result, out_dir)
    if args.json:
        emit_json(result.to_dict())
    else:
        sys.stdout.write("\n" + render_summary(result))
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
        if result.kept_domain:
            print(f"the guest is still running: virsh -c {args.uri} console {result.kept_domain}\n"
                  f"  log in as {result.user}: the password and the SSH key are in {result.kept_credentials}/ "
                  f"(private; delete it when done)\n"
                  f"  remove the guest and its volumes with: ccis-workbench gc (or virsh -c {args.uri} destroy "
                  f"{result.kept_domain})")
    return 0 if result.passed else 1


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _with_rehearsal(args: argparse.Namespace, manifest: dict[str, Any] | None) -> argparse.Namespace:
    if manifest and _is_rehearsal(manifest) and not args.rehearsal:
        args.rehearsal = True
        print("note: the artifact is a REHEARSAL image (not CentOS): only the checks it can answer run",
              file=sys.stderr)
    return args


def _is_rehearsal(manifest: dict[str, Any]) -> bool:
    text = str(manifest.get("rehearsal", "")) + str(manifest.get("tree", "")) + str(manifest.get("source", ""))
    return bool(manifest.get("rehearsal")) or "rehearsal" in text.lower()


def _hostname(profile: Any) -> str:
    name = "".join(ch if ch.isalnum() else "-" for ch in profile.name.lower()).strip("-")[:40]
    return f"ccis-test-{name}" if name else "ccis-test"


def _default_output(image: Path, run_id: str) -> Path:
    parent = image.parent
    if (parent / "manifest.json").exists() and _writable(parent):
        return parent / f"boot-test-{run_id}"
    return Path.cwd() / f"boot-test-{run_id}"


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK)


def resolve_image(spec: str, cat: Any, artifacts: Path) -> tuple[Path, dict[str, Any] | None]:
    """ARTIFACT (a disk file or an artifact directory) or PROFILE (its newest build under *artifacts*)."""
    from ccis_workbench.core.testimage import find_artifact

    p = Path(spec)
    if p.is_file():
        return p.resolve(), _manifest_near(p.parent)
    if p.is_dir():
        return find_artifact(p), _manifest_near(p)
    if spec in cat.profile_names() and artifacts.is_dir():
        builds = sorted((d for d in artifacts.iterdir() if d.is_dir() and d.name.startswith(f"{spec}-")
                         and (d / "manifest.json").exists()), key=lambda d: d.stat().st_mtime)
        if builds:
            return find_artifact(builds[-1]), _manifest_near(builds[-1])
        raise WorkbenchError("No artifact", f"no build of profile {spec} under {artifacts}/",
                             hint=f"build it first: ccis-workbench build {spec}")
    raise WorkbenchError("Not found", f"{spec!r} is neither an image file, an artifact directory nor a profile",
                         file=spec, hint="give a .qcow2/.raw file, a build's artifact directory or a profile name")


def _manifest_near(d: Path) -> dict[str, Any] | None:
    import json

    m = d / "manifest.json"
    if not m.is_file():
        return None
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError("Bad manifest", f"manifest.json cannot be read: {exc}", file=str(m)) from None
    return data if isinstance(data, dict) else None


def _profile_for(cat: Any, args: argparse.Namespace, manifest: dict[str, Any] | None) -> Any:
    ns = argparse.Namespace(profile=args.spec_profile, release=args.release, target=args.target,
                            overlay=args.overlay, sets=args.sets)
    if ns.profile or ns.release or ns.target:
        return profile_from_args(cat, ns)
    if args.image in cat.profile_names() and not Path(args.image).exists():
        ns.profile = args.image
        return profile_from_args(cat, ns)
    if manifest and isinstance(manifest.get("profile"), (str, dict)):
        prof = manifest["profile"]
        if isinstance(prof, dict):
            text = prof.get("yaml")
            if isinstance(text, str):
                return cat.parse_profile_text(text, f"{args.image} (manifest.json)")
            prof = prof.get("name")
        if isinstance(prof, str) and prof in cat.profile_names():
            ns.profile = prof
            return profile_from_args(cat, ns)
    raise WorkbenchError("Which checks?", "cannot tell which profile this image was built from",
                         hint="give --profile NAME (or --release and --target)")
