"""CLI commands `propose` (a branch, a commit, patches and a PR text with evidence) and `koji` (image-build config).

Neither imports textual or libvirt. `propose` never changes the user's working tree, index or current branch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ccis_workbench.cli.common import (
    add_choice_arguments,
    add_json,
    emit_json,
    load_catalog,
    profile_from_args,
    write_atomic,
)
from ccis_workbench.core.wording import counted


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("propose", help="propose a profile upstream: a git branch with the profile, its flattened "
                       "kickstart and evidence, patches and a pull-request text")
    p.add_argument("profile", metavar="PROFILE", help="profile name (profiles/NAME.yaml) or path to it in the catalog")
    p.add_argument("--repo", metavar="DIR", help="the workbench's git repository (default: the catalog root's)")
    p.add_argument("--branch", metavar="NAME", help="branch to create (default: propose/PROFILE); never overwritten")
    p.add_argument("--base", metavar="REV", default="HEAD", help="commit the proposal builds on (default: HEAD)")
    p.add_argument("--tag", help="tag in the kickstart name (default: today's date, YYYYMMDD)")
    p.add_argument("--artifacts", metavar="DIR", help="a build's artifacts folder (manifest.json, CHECKSUM, "
                   "boot-test report)")
    p.add_argument("--boot-test", metavar="FILE", help="a boot-test report JSON (default: found in --artifacts)")
    p.add_argument("--keyring", metavar="FILE", help="OpenPGP keyring a build's CHECKSUM.asc is verified against "
                   "(gpgv; default: gpgv's own)")
    p.add_argument("--base-branch", metavar="REF", help="the branch the catalog is reviewed against: files that differ "
                   "from it are marked 'from this branch' (default: origin/HEAD, origin/main, main or master)")
    p.add_argument("--allow-missing", action="store_true",
                   help="propose even when evidence is missing, stale or unverified (the pull-request text says so)")
    p.add_argument("--allow-rehearsal", action="store_true",
                   help="accept evidence from a REHEARSAL build (not CentOS): every place then says so")
    p.add_argument("--output", metavar="DIR", help="where the patches and PULL_REQUEST.md go (default: "
                   "GITDIR/ccis-workbench/proposals/PROFILE-TAG)")
    p.add_argument("--push", metavar="REMOTE", help="push the branch to REMOTE afterwards (explicit only)")
    p.add_argument("--dry-run", action="store_true", help="show the evidence and what would be committed, "
                   "write nothing")
    add_json(p)
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("koji", help="write the flattened kickstart and a `koji image-build --config` file, and "
                       "print the command")
    add_choice_arguments(p)
    p.add_argument("-o", "--output", metavar="DIR", help="folder for the .ks and .koji.ini (default: koji-PROFILE)")
    p.add_argument("--tag", help="tag in the file names and koji's release field (default: today, YYYYMMDD)")
    p.add_argument("--koji-target", metavar="TARGET", help="koji build target (default: a CBS-style name, "
                   "cloudinstanceNs-images-main-elNs; use the one CBS assigned)")
    p.add_argument("--ksurl", metavar="SCMURL", help="SCM URL holding the kickstart (then --ks-path is its path "
                   "there); default: the local file is uploaded")
    p.add_argument("--ks-path", metavar="PATH", help="the kickstart's path inside --ksurl (default: its file name)")
    p.add_argument("--name", help="koji package name (default: CentOS-Stream-TARGET or CentOS-TARGET)")
    p.add_argument("--koji-release", metavar="REL", help="koji release field (default: the tag)")
    p.add_argument("--distro", help="koji --distro value (default: CentOS-9.0, CentOS-7.9...)")
    p.add_argument("--client", default="koji", metavar="CMD", help="client in the printed command (koji or cbs)")
    p.add_argument("--no-scratch", action="store_true", help="print the command without --scratch")
    p.set_defaults(func=cmd_koji)


# -- propose ---------------------------------------------------------------------------------------------------

def _print_evidence(ev: Any) -> None:
    from ccis_workbench.core.propose import visible

    for i in ev.items:
        mark = i.status if i.status == "ok" else i.status.upper()
        digest = f"  sha256 {i.sha256}" if i.sha256 else ""
        print(f"  {mark:10} {i.title}: {visible(i.detail)}{digest}")  # details carry fields of evidence files


def cmd_propose(args: argparse.Namespace) -> int:
    """`propose`: flows.propose drafts, checks the evidence and commits; this prints."""
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.flows.propose import (
        ProposeRequest,
        commit_proposal,
        draft_proposal,
        dry_run_report,
        require_evidence,
    )

    cat = load_catalog(args)
    request = ProposeRequest(profile=args.profile, repo=args.repo, branch=args.branch, base=args.base, tag=args.tag,
                             artifacts=args.artifacts, boot_test=args.boot_test, output=args.output, push=args.push,
                             keyring=args.keyring, base_branch=args.base_branch)
    draft = draft_proposal(cat, Composer(cat), request)
    if not args.json:
        print(f"Proposal for profile {draft.profile.name}: {draft.folder}/{draft.proposal.kickstart_name}")
        print(f"  kickstart sha256 {draft.proposal.kickstart_sha256}")
        print("Evidence:")
        _print_evidence(draft.evidence)
        ours = draft.proposal.from_branch_files()
        print(f"From this branch ({draft.proposal.trust_note}):" if ours else f"Trust: {draft.proposal.trust_note}")
        for f in ours:
            print(f"  {f}")
    require_evidence(draft, allow_missing=args.allow_missing, allow_rehearsal=args.allow_rehearsal)
    if args.dry_run:
        if args.json:
            emit_json(dry_run_report(draft))
        else:
            print(f"Would create branch {draft.branch} on {draft.base[:12]} with:")
            for c in draft.changed:
                print(f"  {c.path} ({c.state})")
            print(f"  {draft.folder}/ ({counted(len(draft.proposal.folder_files()), 'file')})")
        return 0
    report = commit_proposal(draft, request)
    if args.json:
        emit_json(report)
        return 0
    print(f"Created branch {draft.branch} at {report['commit'][:12]} (your checkout is unchanged)")
    for patch in report["patches"]:
        print(f"  patch: {patch}")
    print(f"  pull-request text: {report['pull_request']}")
    if args.push:
        print(f"Pushed {draft.branch} to {args.push}")
    else:
        print(f"Push it when ready: git -C {shlex.quote(str(draft.repo))} push <remote> {shlex.quote(draft.branch)}")
    return 0


# -- koji ------------------------------------------------------------------------------------------------------

def _check_koji_output(outdir: Path, files: list[Path]) -> None:
    """`koji -o DIR` writes two files into DIR: refuse (exit 2, before anything is written) a DIR that is a file
    or a link, and files that exist already (there is no --force: nothing is overwritten)."""
    from ccis_workbench.core.errors import WorkbenchError

    if os.path.lexists(outdir) and (outdir.is_symlink() or not outdir.is_dir()):
        raise WorkbenchError("Output is not a folder", "-o names the folder for the .ks and .koji.ini; this exists "
                             "and is a file (or a link)", file=str(outdir),
                             hint="give a new or existing folder with -o; nothing was written")
    existing = [f for f in files if os.path.lexists(f)]
    if existing:
        raise WorkbenchError("Output exists", f"{', '.join(f.name for f in existing)} would be overwritten",
                             file=str(existing[0]),
                             hint="choose another folder with -o or another --tag, or remove the old files; nothing "
                                  "was written")


def cmd_koji(args: argparse.Namespace) -> int:
    from ccis_workbench.core import koji
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.lint import lint_text
    from ccis_workbench.core.propose import check_tag, default_tag

    cat = load_catalog(args)
    profile = profile_from_args(cat, args)
    comp = Composer(cat).compose(profile)
    tag = check_tag(args.tag or default_tag())
    outdir = Path(args.output or f"koji-{comp.profile.name}")
    ks_name, ini_name = koji.koji_files(comp, tag=tag)
    ks_text = koji.koji_kickstart(comp)
    ks_ref = (args.ks_path or ks_name) if args.ksurl else str((outdir / ks_name).resolve())
    cfg = koji.image_build_config(comp, kickstart=ks_ref, tag=tag, koji_target=args.koji_target, ksurl=args.ksurl,
                                  name=args.name, release=args.koji_release, distro=args.distro)
    comment = (f"koji image-build config for profile {comp.profile.name} (ccis-workbench)\n"
               f"kickstart sha256 {koji.sha256_text(ks_text)}\n"
               + ("" if args.koji_target else "target: a CBS-style default; replace it with the target CBS assigned\n"))
    ini = cfg.to_ini(comment=comment.rstrip("\n"))
    findings = [f for f in lint_text(ks_text, comp.version, filename=ks_name, target=comp.target, backend="koji")
                if f.severity == "error" and not f.waived]
    ks_path, ini_path = outdir / ks_name, outdir / ini_name
    _check_koji_output(outdir, [ks_path, ini_path])
    outdir.mkdir(parents=True, exist_ok=True)
    write_atomic(ks_path, ks_text)
    write_atomic(ini_path, ini)
    cmd = koji.command(str(ini_path), scratch=not args.no_scratch, koji=args.client)
    if args.json:
        emit_json({"profile": comp.profile.name, "kickstart": str(ks_path), "config": str(ini_path),
                   "kickstart_sha256": koji.sha256_text(ks_text), "image_build": cfg.to_dict(), "command": cmd,
                   "lint_errors": [f.to_dict() for f in findings], "notes": cfg.notes})
        return 0
    for f in findings:
        print(f"warning: the koji kickstart has a lint error: {f}", file=sys.stderr)
    for note in cfg.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"kickstart: {ks_path}")
    print(f"config:    {ini_path}")
    if not args.koji_target:
        print(f"note: koji target {cfg.target!r} is a CBS-style default; pass --koji-target with the real one",
              file=sys.stderr)
    print(shlex.join(cmd))
    return 0
