"""CLI commands of the image test spec: `spec PROFILE` (read it without booting) and `boot-test ARTIFACT|PROFILE`.

`spec` imports only the core. `boot-test` imports the libvirt backend when it runs.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from ccis_workbench.cli.common import (
    add_choice_arguments,
    add_choice_options,
    emit_json,
    load_catalog,
    profile_from_args,
    say_on_stderr,
    setting_default,
    settings_from_args,
)
from ccis_workbench.core.wording import counted
from ccis_workbench.flows.settings import ACCELS

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
    p.add_argument("--artifacts", metavar="DIR",
                   help="where builds put their artifacts (to find a PROFILE's latest image; default: the artifacts "
                        "setting)")
    p.add_argument("--uri", help=f"libvirt URI ({setting_default('uri')})")
    p.add_argument("--pool", help=f"storage pool the workbench owns ({setting_default('pool')})")
    p.add_argument("--accel", choices=ACCELS, help=f"accelerator ({setting_default('accel')})")
    p.add_argument("--memory", type=int, metavar="MiB", help=f"guest memory ({setting_default('test_memory_mb')})")
    p.add_argument("--grow", type=int, metavar="MiB",
                   help="the test disk is this much larger than the image, so growing the root file system is "
                        f"tested ({setting_default('grow_mib')})")
    p.add_argument("--login-timeout", type=float, metavar="S",
                   help=f"seconds to wait for the login prompt ({setting_default('login_timeout')})")
    p.add_argument("--inactivity-timeout", type=float, metavar="S",
                   help=f"seconds of console silence before giving up ({setting_default('inactivity_timeout')})")
    p.add_argument("--firmware", choices=("auto", "bios", "uefi", "both"), default="auto",
                   help="boot with SeaBIOS, UEFI (OVMF on the q35 machine; the image needs an EFI system partition) "
                        "or both, one after the other (passes only if both pass); default auto: what the target "
                        "claims for the release (its `firmware:` in the catalog; BIOS when it claims nothing)")
    p.add_argument("--keyring", metavar="FILE",
                   help="OpenPGP keyring the image's signed CHECKSUM is verified against (the report notes the result)")
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
    p.add_argument("--plan", action="store_true", help="print what the boot test would do (domain XML, volumes, "
                   "seed, checks) and boot nothing")
    p.add_argument("--quiet", action="store_true", help="do not stream the console")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--base-branch", metavar="REF", help="the branch the catalog is reviewed against: check commands "
                   "from files changed since are printed first (default: origin/HEAD, origin/main, main or master)")
    p.add_argument("--trust-checks", action="store_true", help="run check commands from files changed on this "
                   "branch outside a VM too (container images: podman or a chroot on this host)")
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
             + f"; {counted(len(plan.selected), 'check')} ("
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
    from ccis_workbench.core.monitor import PrintMonitor
    from ccis_workbench.flows.signals import cancel_on_signals

    monitor = PrintMonitor(show_console=not args.quiet and not args.json)
    with cancel_on_signals(monitor.cancel_event, say_on_stderr) as stopped:
        return _boot_test(args, monitor, stopped)


def _trust_checks(cat: Any, plan: Any, args: argparse.Namespace) -> None:
    """Print the check commands that come from files changed on this branch (flows.trust) before anything runs;
    refuse to run them outside a VM without --trust-checks (not for --plan: it runs nothing)."""
    from ccis_workbench.flows.trust import branch_changes, checks_from_branch, describe_checks, require_trusted_checks

    changes = branch_changes(cat.root, args.base_branch)
    ours = checks_from_branch(plan, changes)
    if ours:
        print(f"note: {len(ours)} check command(s) come from files changed on this branch ({changes.note}):",
              file=sys.stderr)
        for line in describe_checks(ours):
            print(line, file=sys.stderr)
    if not args.plan:
        require_trusted_checks(plan, ours, trust_checks=args.trust_checks)


def _boot_test(args: argparse.Namespace, monitor: Any, stopped: Any) -> int:
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.report import render_summary, write_reports
    from ccis_workbench.flows.test import BootRequest, is_cancelled, prepare_test, report_dir, run_test

    settings = settings_from_args(args, memory="test_memory_mb", grow="grow_mib", login_timeout="login_timeout",
                                  inactivity_timeout="inactivity_timeout", artifacts="artifacts")
    cat = load_catalog(args)
    explicit = None
    if args.spec_profile or args.release or args.target:
        ns = argparse.Namespace(profile=args.spec_profile, release=args.release, target=args.target,
                                overlay=args.overlay, sets=args.sets)
        explicit = profile_from_args(cat, ns)
    setup = prepare_test(cat, Composer(cat), args.image, profile=explicit, rehearsal=True if args.rehearsal else None,
                         seed=args.seed, only=args.only, skip=args.skip, artifacts=Path(settings.artifacts))
    for note in setup.notes:
        print(f"note: {note}", file=sys.stderr)
    _trust_checks(cat, setup.plan, args)
    request = BootRequest.from_settings(settings, keep_on_failure=args.keep_on_failure,
                                        container_runner=args.container_runner, workdir=args.workdir,
                                        keyring=args.keyring, firmware=args.firmware)
    if args.plan:
        from ccis_workbench.flows.test import plan_tests

        plans = plan_tests(setup, request)
        plan = plans[0]
        if args.json:
            emit_json(plan.to_dict() if plan is not None and len(plans) == 1 else
                      {"firmwares": [p.to_dict() for p in plans]} if plan is not None else
                      {"container": True, "checks": setup.plan.to_dict()})
        elif plan is None:
            sys.stdout.write("container image: nothing boots; the checks run in podman or a chroot\n\n"
                             + render_plan(setup.plan))
        else:
            sys.stdout.write("\n".join(p.render_text() for p in plans))
        return 0
    def report(result: Any) -> None:
        """Called once, as soon as the verdict is final (before the guest is destroyed): the user waits for
        nothing after it but the exit."""
        if is_cancelled(result):
            return
        paths = write_reports(result, report_dir(setup.image, result.run_id, args.output))
        if args.json:
            emit_json(result.to_dict())
        else:
            sys.stdout.write("\n" + render_summary(result))
            print(f"reports: {', '.join(str(p) for p in paths.values())}")
            if result.kept_domain:
                print(f"the guest is still running: virsh -c {request.uri} console {result.kept_domain}\n"
                      f"  log in as {result.user}: the password and the SSH key are in {result.kept_credentials}/ "
                      f"(private; delete it when done)\n"
                      f"  remove the guest and its volumes with: ccis-workbench gc (or virsh -c {request.uri} "
                      f"destroy {result.kept_domain})")
        sys.stdout.flush()

    result = run_test(setup, request, monitor, on_result=report)
    if is_cancelled(result):
        # a cancelled run is not evidence: no report is written (propose could take it for one)
        print(f"boot test cancelled ({stopped.name or 'interrupted'}): no report written", file=sys.stderr)
        return stopped.exit_status or 130
    return 0 if result.passed else 1
