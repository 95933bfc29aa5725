"""CLI commands `propose` (a branch, a commit, patches and a PR text with evidence) and `koji` (image-build config).

Neither imports textual or libvirt. `propose` never changes the user's working tree, index or current branch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
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
from ccis_workbench.core.errors import WorkbenchError


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
    p.add_argument("--allow-missing", action="store_true",
                   help="propose even when evidence is missing or stale (the pull-request text says so)")
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

def _repo_path(prefix: Path, rel: str) -> str:
    return (prefix / rel).as_posix() if str(prefix) not in ("", ".") else Path(rel).as_posix()


def _print_evidence(ev: Any) -> None:
    for i in ev.items:
        mark = {"ok": "ok", "failing": "FAILING", "stale": "STALE", "missing": "MISSING"}.get(i.status, i.status)
        digest = f"  sha256 {i.sha256}" if i.sha256 else ""
        print(f"  {mark:8} {i.title}: {i.detail}{digest}")


def cmd_propose(args: argparse.Namespace, emit: Callable[[Any], None] = emit_json) -> int:
    """`propose`; with --json the report goes to *emit* (stdout by default; the TUI passes its own)."""
    from ccis_workbench import gitops
    from ccis_workbench.core import propose as prop
    from ccis_workbench.core.compose import Composer

    cat = load_catalog(args)
    profile = cat.load_profile(args.profile)
    if not profile.source or not str(profile.source).startswith("profiles/"):
        raise WorkbenchError("Profile outside the catalog", "a proposal commits the profile file, so it must live "
                             "in the catalog's profiles/ folder", file=str(profile.source or args.profile),
                             hint=f"copy it to {Path(cat.root) / 'profiles'}/ and propose it by name")
    tag = prop.check_tag(args.tag or prop.default_tag())
    catalog_root = Path(cat.root).resolve()
    repo = gitops.toplevel(Path(args.repo).resolve() if args.repo else catalog_root)
    try:
        prefix = catalog_root.relative_to(repo)
    except ValueError:
        raise WorkbenchError("Catalog outside the repository", f"the catalog {catalog_root} is not inside the git "
                             f"repository {repo}", hint="give --catalog and --repo that belong together") from None
    base = gitops.resolve_commit(repo, args.base)
    branch = args.branch or prop.default_branch(profile.name)
    gitops.check_branch_name(repo, branch)

    composer = Composer(cat)
    comp = composer.compose(profile)
    files_rel = prop.layer_files(comp)
    own = [f for f in files_rel if prop.proposable(f)]
    gitops.check_clean(repo, [_repo_path(prefix, f) for f in own])
    gitops.check_branch_free(repo, branch)
    spec_changed = []
    for f in files_rel:
        if prop.proposable(f):
            continue
        path = catalog_root / f
        if path.is_file() and gitops.path_state(repo, base, _repo_path(prefix, f), path.read_bytes()) != "unchanged":
            spec_changed.append(_repo_path(prefix, f))
    if spec_changed:
        raise WorkbenchError("Baseline differs from the base commit",
                             f"{', '.join(spec_changed)} differ(s) from {args.base}: the kickstart would not match "
                             "what the proposal's branch holds", file=str(repo),
                             hint="propose release or baseline changes separately, or choose --base")

    baseline = composer.compose_baseline(comp.release.name, comp.variables)
    evidence = prop.gather_evidence(comp, baseline, artifacts=Path(args.artifacts) if args.artifacts else None,
                                    boot_test=Path(args.boot_test) if args.boot_test else None)
    proposal = prop.build_proposal(comp, evidence, tag=tag, branch=branch,
                                   layer_paths=[_repo_path(prefix, f) for f in files_rel])
    contents: dict[str, bytes] = {}
    modes: dict[str, str] = {}
    for f in own:
        path = catalog_root / f
        if not path.is_file():
            continue
        rp = _repo_path(prefix, f)
        contents[rp] = path.read_bytes()
        modes[rp] = gitops.file_mode(path)
    proposal.changed = [prop.ChangedFile(p, gitops.path_state(repo, base, p, data)) for p, data in contents.items()]
    folder = _repo_path(prefix, proposal.folder)
    _add_koji_files(proposal, comp, folder, tag)
    outdir = Path(args.output) if args.output else \
        gitops.git_dir(repo) / "ccis-workbench" / "proposals" / f"{profile.name}-{tag}"

    unmet = evidence.unmet()
    report: dict[str, Any] = {"profile": profile.name, "repository": str(repo), "branch": branch, "base": base,
                              "kickstart": f"{folder}/{proposal.kickstart_name}",
                              "kickstart_sha256": proposal.kickstart_sha256,
                              "evidence": [i.to_dict() for i in evidence.items],
                              "files": [{"path": c.path, "state": c.state} for c in proposal.changed]}
    if not args.json:
        print(f"Proposal for profile {profile.name}: {folder}/{proposal.kickstart_name}")
        print(f"  kickstart sha256 {proposal.kickstart_sha256}")
        print("Evidence:")
        _print_evidence(evidence)
    if unmet and not args.allow_missing:
        names = "; ".join(f"{i.title} {i.status}" for i in unmet)
        raise WorkbenchError("Evidence missing or stale", f"{names}; nothing was written",
                             hint="build and boot-test this exact kickstart and pass --artifacts DIR, or propose "
                                  "anyway with --allow-missing (the pull-request text will say what is missing)")
    if args.dry_run:
        if args.json:
            emit(dict(report, dry_run=True, commit_message=proposal.commit_message()))
        else:
            print(f"Would create branch {branch} on {base[:12]} with:")
            for c in proposal.changed:
                print(f"  {c.path} ({c.state})")
            print(f"  {folder}/ ({len(proposal.folder_files())} files)")
        return 0
    if outdir.exists() and any(outdir.iterdir()):
        raise WorkbenchError("Output folder not empty", "the patches would mix with other files", file=str(outdir),
                             hint="choose an empty folder with --output; nothing was changed")
    gitops.check_identity(repo)

    files = dict(contents)
    files.update({_repo_path(prefix, p): data for p, data in proposal.folder_files().items()})
    commit = gitops.commit_files(repo, base=base, branch=branch, files=files, message=proposal.commit_message(),
                                 replace_dirs=[folder], modes=modes)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        try:
            gitops.format_patch(repo, base, commit, tmp)
            (tmp / "PULL_REQUEST.md").write_text(proposal.pr_description(), encoding="utf-8")
            if outdir.exists():
                outdir.rmdir()  # empty, checked above
            os.replace(tmp, outdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except BaseException:
        gitops.delete_branch(repo, branch, commit)
        raise
    patches = sorted(str(p) for p in outdir.glob("*.patch"))
    pushed = gitops.push(repo, args.push, branch) if args.push else None
    if args.json:
        emit(dict(report, commit=commit, patches=patches, pull_request=str(outdir / "PULL_REQUEST.md"),
                       pushed_to=args.push if pushed is not None else None))
        return 0
    print(f"Created branch {branch} at {commit[:12]} (your checkout is unchanged)")
    for patch in patches:
        print(f"  patch: {patch}")
    print(f"  pull-request text: {outdir / 'PULL_REQUEST.md'}")
    if args.push:
        print(f"Pushed {branch} to {args.push}")
    else:
        print(f"Push it when ready: git -C {shlex.quote(str(repo))} push <remote> {shlex.quote(branch)}")
    return 0


def _add_koji_files(proposal: Any, comp: Any, folder: str, tag: str) -> None:
    """The koji kickstart and image-build config beside the proposal (kickstart named by its repository path)."""
    from ccis_workbench.core import koji

    ks_name, ini_name = koji.koji_files(comp, tag=tag)
    koji_ks = ks_name[:-3] + ".koji.ks"
    cfg = koji.image_build_config(comp, kickstart=f"{folder}/{koji_ks}", tag=tag)
    ks_text = koji.koji_kickstart(comp)
    comment = (f"koji image-build config for profile {comp.profile.name}; run from the repository's top\n"
               f"kickstart sha256 {koji.sha256_text(ks_text)} (the local kickstart with reboot, without url/repo)\n"
               "target: a CBS-style default; replace it with the target CBS assigned")
    proposal.extra_files[koji_ks] = ks_text.encode("utf-8")
    proposal.extra_files[ini_name] = cfg.to_ini(comment=comment).encode("utf-8")
    proposal.koji_command = koji.command(f"{folder}/{ini_name}")


# -- koji ------------------------------------------------------------------------------------------------------

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
    outdir.mkdir(parents=True, exist_ok=True)
    ks_path, ini_path = outdir / ks_name, outdir / ini_name
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
