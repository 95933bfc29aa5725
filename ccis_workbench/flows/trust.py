"""Trust labels, written once for both faces: which catalog files come from the branch under review.

A reviewer opens a contributor's branch: every catalog file (profile, overlay, target, release, testspec) that
differs from the base branch (committed on the branch, staged, modified or untracked) is the contributor's, not
the SIG's. Propose marks such files "from this branch" in its evidence and pull-request text; `boot-test` prints
the check commands that come from them before running any, and refuses to run them outside a VM (container
checks run in podman or a chroot on this host) unless the user passes --trust-checks. The review screen can mark
its cells with `changed_catalog_files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError

#: How a file changed relative to the base branch is labelled everywhere.
FROM_BRANCH = "from this branch"
#: The catalog folders whose files carry trust labels.
CATALOG_FOLDERS = ("profiles", "kickstarts")


@dataclass
class BranchChanges:
    """What differs from the base branch: catalog-relative paths, and what was compared (or why nothing was)."""

    files: set[Path] = field(default_factory=set)
    base: str | None = None  # the base branch compared with (None: none found, nothing compared)
    merge_base: str | None = None  # the commit the branch's changes are counted from
    note: str = ""

    @property
    def known(self) -> bool:
        """Whether anything was compared (a git checkout with a base branch)."""
        return self.base is not None

    def from_branch(self, rel: str | Path | None) -> bool:
        """Whether catalog-relative file *rel* comes from the branch: it changed, or it lies outside the catalog
        (an absolute path or one going up: nothing the SIG reviewed). None (no file) is not."""
        if rel is None or str(rel) == "" or str(rel).startswith("<"):
            return False
        p = Path(str(rel))
        if p.is_absolute() or ".." in p.parts:
            return True
        return p in self.files


def branch_changes(root: str | Path, base: str | None = None) -> BranchChanges:
    """The catalog files under *root* that differ from *base* (default: origin/HEAD, origin/main, origin/master,
    main or master, whichever exists first), counted from where the current branch left it, with uncommitted and
    untracked files. A checkout on the base branch itself (HEAD is where it left it) has no file from a branch.
    Outside a git checkout, or without a base branch, nothing is compared (`known` is False) and `note` says why;
    an explicit *base* that names no commit is an error."""
    from ccis_workbench import gitops

    catalog = Path(root).resolve()
    try:
        repo = gitops.toplevel(catalog)
    except WorkbenchError:
        return BranchChanges(note=f"{catalog} is not a git checkout: no file can be told from the base branch")
    ref = base or gitops.default_base_branch(repo)
    if ref is None:
        return BranchChanges(
            note="no base branch (origin/HEAD, origin/main, main, master): give one with --base-branch"
        )
    start = gitops.merge_base(repo, ref)
    if start == gitops.resolve_commit(repo, "HEAD"):
        # on the base branch itself (or behind it): no branch to label; local edits are the user's own
        return BranchChanges(
            base=ref,
            merge_base=start,
            note=f"the checkout is on {ref} (no commit of its own): no file comes from a branch",
        )
    prefix = catalog.relative_to(repo)
    specs = [(prefix / f).as_posix() if str(prefix) != "." else f for f in CATALOG_FOLDERS]
    files = set()
    for name in gitops.changed_since(repo, start, specs):
        try:
            files.add(Path(name).relative_to(prefix) if str(prefix) != "." else Path(name))
        except ValueError:
            continue
    return BranchChanges(
        files=files,
        base=ref,
        merge_base=start,
        note=f"{len(files)} catalog file(s) differ from {ref} (since {start[:12]})",
    )


def changed_catalog_files(root: str | Path, base: str | None = None) -> set[Path]:
    """Catalog-relative paths of the catalog files that differ from the base branch (see `branch_changes`); an
    empty set when nothing can be compared."""
    return branch_changes(root, base).files


def check_from_branch(selected: Any, changes: BranchChanges) -> bool:
    """Whether a selected check (core.testspec.SelectedCheck) comes from the branch: its definition is in a file
    of the branch (testspec.yaml, an overlay's or target's checks:), or, for a derived check, one of the files
    that gave it its items is (an overlay whose package list the branch changed makes `derived.packages-*` the
    contributor's too: the command runs with the names they wrote)."""
    origin = selected.check.origin
    if origin is not None and changes.from_branch(origin.file):
        return True
    return any(changes.from_branch(f) for f in getattr(selected, "sources", ()))


def checks_from_branch(plan: Any, changes: BranchChanges) -> list[Any]:
    """The selected checks of *plan* that come from the branch (`check_from_branch`): their commands are the
    contributor's."""
    return [s for s in plan.selected if check_from_branch(s, changes)]


def describe_checks(checks: list[Any]) -> list[str]:
    """Lines a reviewer reads before such checks run: id, where it is defined, the full command."""
    from ccis_workbench.core.propose import visible

    lines = []
    for s in checks:
        made = f", items from {', '.join(visible(f) for f in s.sources)}" if getattr(s, "sources", None) else ""
        lines.append(f"  {s.check.id}  [{visible(s.check.origin)}{made}, {FROM_BRANCH}]")
        lines += [f"    $ {visible(line)}" for line in s.check.command.splitlines() or [""]]
    return lines


def require_trusted_checks(plan: Any, checks: list[Any], *, trust_checks: bool) -> None:
    """Check commands from the branch run outside a VM (a container image's checks run in podman or a chroot on
    this host) only with the user's explicit --trust-checks: a WorkbenchError (exit status 2) before anything
    runs. In a VM they run in the booted guest, the sandbox they are made for."""
    if checks and plan.context != "vm" and not trust_checks:
        first = checks[0].check.origin
        raise WorkbenchError(
            "Untrusted check commands",
            f"{len(checks)} check command(s) come from files changed on "
            "this branch and would run on this host (container image: podman or a chroot), not "
            "in a VM: " + ", ".join(s.check.id for s in checks),
            file=str(first.file) if first else None,
            line=first.line if first else 0,
            hint="read the commands printed above; run them with --trust-checks, or --skip their ids; nothing was run",
        )
