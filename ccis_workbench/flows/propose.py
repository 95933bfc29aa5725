"""The propose hand-off, written once for both faces: profile + evidence -> a branch, a commit, patches and a
pull-request text. The user's working tree, index and current branch are never touched.

`draft_proposal` gathers everything and writes nothing (the CLI prints it, the TUI renders it, `--dry-run` stops
there). `require_evidence` refuses missing or stale evidence unless the user allowed it explicitly (the CLI's
`--allow-missing`, the TUI's second, separate confirmation). `commit_proposal` writes the branch and patches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError


@dataclass
class ProposeRequest:
    """What the user chose: the profile (saved in the catalog's profiles/), the evidence and where it goes."""

    profile: str
    repo: str | None = None  # default: the git repository holding the catalog
    branch: str | None = None  # default: propose/PROFILE
    base: str = "HEAD"
    tag: str | None = None  # default: today's date
    artifacts: str | None = None
    boot_test: str | None = None
    output: str | None = None  # default: GITDIR/ccis-workbench/proposals/PROFILE-TAG
    push: str | None = None
    keyring: str | None = None  # the OpenPGP keyring a build's CHECKSUM.asc is checked against (default: gpgv's)
    base_branch: str | None = None  # trust labels: the branch the catalog is compared with (default: flows.trust)


@dataclass
class ProposalDraft:
    """Everything a proposal would commit, with its evidence; nothing written yet."""

    profile: Any
    comp: Any
    evidence: Any  # core.propose.Evidence
    proposal: Any  # core.propose.Proposal
    repo: Path
    base: str
    branch: str
    folder: str  # the proposal folder's path in the repository
    prefix: Path = Path()  # the catalog's path inside the repository
    contents: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    outdir: Path = Path()

    @property
    def changed(self) -> list[Any]:
        """The catalog files the commit changes (files identical to the base commit are not listed)."""
        return [c for c in self.proposal.changed if c.state != "unchanged"]

    def report(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "repository": str(self.repo), "branch": self.branch,
                "base": self.base, "kickstart": f"{self.folder}/{self.proposal.kickstart_name}",
                "kickstart_sha256": self.proposal.kickstart_sha256,
                "evidence": [i.to_dict() for i in self.evidence.items],
                "files": [{"path": c.path, "state": c.state, "from_branch": c.from_branch} for c in self.changed],
                "from_branch": self.proposal.from_branch_files(), "trust": self.proposal.trust_note}


def _repo_path(prefix: Path, rel: str) -> str:
    return (prefix / rel).as_posix() if str(prefix) not in ("", ".") else Path(rel).as_posix()


def draft_proposal(catalog: Any, composer: Any, request: ProposeRequest) -> ProposalDraft:
    """Check the repository and the profile, compose, gather the evidence (blocking; writes nothing)."""
    from ccis_workbench import gitops as git
    from ccis_workbench.core import propose as prop
    from ccis_workbench.flows.settings import is_installed_catalog

    if is_installed_catalog(Path(catalog.root)):
        raise WorkbenchError("The catalog is read-only", "this is the catalog installed with the workbench; a "
                             "proposal commits to a git repository of your own", file=str(catalog.root),
                             hint="clone the catalog's repository, or `ccis-workbench init DIR`, and run there")
    profile = catalog.load_profile(request.profile)
    if not profile.source or not str(profile.source).startswith("profiles/"):
        raise WorkbenchError("Profile outside the catalog", "a proposal commits the profile file, so it must live "
                             "in the catalog's profiles/ folder", file=str(profile.source or request.profile),
                             hint=f"copy it to {Path(catalog.root) / 'profiles'}/ and propose it by name")
    tag = prop.check_tag(request.tag or prop.default_tag())
    catalog_root = Path(catalog.root).resolve()
    repo = git.toplevel(Path(request.repo).resolve() if request.repo else catalog_root)
    try:
        prefix = catalog_root.relative_to(repo)
    except ValueError:
        raise WorkbenchError("Catalog outside the repository", f"the catalog {catalog_root} is not inside the git "
                             f"repository {repo}", hint="give --catalog and --repo that belong together") from None
    base = git.resolve_commit(repo, request.base)
    branch = request.branch or prop.default_branch(profile.name)
    git.check_branch_name(repo, branch)

    comp = composer.compose(profile)
    files_rel = prop.layer_files(comp)
    own = [f for f in files_rel if prop.proposable(f)]
    git.check_clean(repo, [_repo_path(prefix, f) for f in own])
    git.check_branch_free(repo, branch)
    spec_changed = []
    for f in files_rel:
        if prop.proposable(f):
            continue
        path = catalog_root / f
        if path.is_file() and git.path_state(repo, base, _repo_path(prefix, f), path.read_bytes()) != "unchanged":
            spec_changed.append(_repo_path(prefix, f))
    if spec_changed:
        raise WorkbenchError("Baseline differs from the base commit",
                             f"{', '.join(spec_changed)} differ(s) from {request.base}: the kickstart would not "
                             "match what the proposal's branch holds", file=str(repo),
                             hint="propose release or baseline changes separately, or choose --base")

    baseline = composer.compose_baseline(comp.release.name, comp.variables)
    evidence = prop.gather_evidence(comp, baseline,
                                    artifacts=Path(request.artifacts) if request.artifacts else None,
                                    boot_test=Path(request.boot_test) if request.boot_test else None,
                                    verify_signature=signature_check(request.keyring))
    proposal = prop.build_proposal(comp, evidence, tag=tag, branch=branch,
                                   layer_paths=[_repo_path(prefix, f) for f in files_rel])
    draft = ProposalDraft(profile, comp, evidence, proposal, repo, base, branch, _repo_path(prefix, proposal.folder),
                          prefix)
    for f in own:
        path = catalog_root / f
        if not path.is_file():
            continue
        rp = _repo_path(prefix, f)
        draft.contents[rp] = path.read_bytes()
        draft.modes[rp] = git.file_mode(path)
    proposal.changed = [prop.ChangedFile(p, git.path_state(repo, base, p, data))
                        for p, data in draft.contents.items()]
    _trust_labels(proposal, catalog_root, prefix, files_rel, request.base_branch)
    _add_koji_files(proposal, comp, draft.folder, tag)
    draft.outdir = Path(request.output) if request.output else \
        git.git_dir(repo) / "ccis-workbench" / "proposals" / f"{profile.name}-{tag}"
    return draft


def signature_check(keyring: str | None = None) -> Any:
    """The CHECKSUM.asc check propose's evidence uses: gpgv through the verify flow, against *keyring*."""
    from ccis_workbench.flows.verify import check_signature

    def check(folder: Path) -> tuple[bool, str]:
        return check_signature(folder, keyring)

    return check


def preview_evidence(composer: Any, comp: Any, *, artifacts: str | None, tag: str | None,
                     branch: str | None) -> tuple[Any, Any]:
    """(Evidence, Proposal) for any composition, saved or not: what the propose screen shows before the user
    chooses (blocking: lint, the baseline diff, sha256 of the artifacts). Writes nothing."""
    from ccis_workbench.core import propose as prop

    baseline = composer.compose_baseline(comp.release.name, comp.variables)
    evidence = prop.gather_evidence(comp, baseline, artifacts=Path(artifacts) if artifacts else None,
                                    verify_signature=signature_check())
    proposal = prop.build_proposal(comp, evidence, tag=prop.check_tag(tag or prop.default_tag()),
                                   branch=branch or None)
    root = getattr(getattr(composer, "catalog", None), "root", None)
    if root is not None:  # the catalog's own paths (no repository prefix here)
        _trust_labels(proposal, Path(root), Path(), list(proposal.layer_files), None)
    return evidence, proposal


def dry_run_report(draft: ProposalDraft) -> dict[str, Any]:
    """What a dry run reports (both faces): the draft, the commit message, nothing written."""
    return dict(draft.report(), dry_run=True, commit_message=draft.proposal.commit_message())


def require_evidence(draft: ProposalDraft, *, allow_missing: bool, allow_rehearsal: bool = False) -> None:
    """Refuse a proposal whose evidence is missing, stale or failing, or comes from the rehearsal system, unless
    the user allowed each explicitly (then the pull-request text and the commit say so)."""
    from ccis_workbench.core import propose as prop

    prop.refuse_rehearsal(draft.evidence, allow_rehearsal)
    unmet = draft.evidence.unmet()
    if unmet and not allow_missing:
        names = "; ".join(f"{i.title} {i.status}" for i in unmet)
        raise WorkbenchError("Evidence missing or stale", f"{names}; nothing was written",
                             hint="build and boot-test this exact kickstart and pass --artifacts DIR (the folder the "
                                  "build wrote: unverified evidence does not cross-check with its manifest, CHECKSUM "
                                  "and signature), or propose anyway with --allow-missing (the pull-request text will "
                                  "say what is missing)")


def commit_proposal(draft: ProposalDraft, request: ProposeRequest) -> dict[str, Any]:
    """Create the branch and commit, write the patches and PULL_REQUEST.md, push if asked; the report."""
    from ccis_workbench import gitops as git

    outdir = draft.outdir
    if os.path.lexists(outdir) and (outdir.is_symlink() or not outdir.is_dir()):
        raise WorkbenchError("Output is not a folder", "it exists and is a file (or a link): it would be replaced",
                             file=str(outdir), hint="choose a new or empty folder with --output; nothing was changed")
    if outdir.exists() and any(outdir.iterdir()):
        raise WorkbenchError("Output folder not empty", "the patches would mix with other files", file=str(outdir),
                             hint="choose an empty folder with --output; nothing was changed")
    git.check_identity(draft.repo)
    proposal = draft.proposal
    files = dict(draft.contents)
    files.update({_repo_path(draft.prefix, p): data for p, data in proposal.folder_files().items()})
    commit = git.commit_files(draft.repo, base=draft.base, branch=draft.branch, files=files,
                              message=proposal.commit_message(), replace_dirs=[draft.folder], modes=draft.modes)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        try:
            git.format_patch(draft.repo, draft.base, commit, tmp)
            (tmp / "PULL_REQUEST.md").write_text(proposal.pr_description(), encoding="utf-8")
            if outdir.exists():
                outdir.rmdir()  # empty, checked above
            os.replace(tmp, outdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except BaseException:
        git.delete_branch(draft.repo, draft.branch, commit)
        raise
    patches = sorted(str(p) for p in outdir.glob("*.patch"))
    pushed = git.push(draft.repo, request.push, draft.branch) if request.push else None
    return dict(draft.report(), commit=commit, patches=patches, pull_request=str(outdir / "PULL_REQUEST.md"),
                pushed_to=request.push if pushed is not None else None)


def _trust_labels(proposal: Any, catalog_root: Path, prefix: Path, files_rel: list[str],
                  base_branch: str | None) -> None:
    """Mark the layer files that differ from the base branch, and the files the commit adds or changes, "from this
    branch" (flows.trust)."""
    from ccis_workbench.flows.trust import branch_changes

    changes = branch_changes(catalog_root, base_branch)
    proposal.trust_note = changes.note
    proposal.from_branch = sorted(_repo_path(prefix, f) for f in files_rel if changes.from_branch(f))
    for c in proposal.changed:
        c.from_branch = c.state != "unchanged" or c.path in proposal.from_branch


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
