"""Real git, through argument lists (never a shell string), for proposals.

A proposal commit is made without touching the user's working tree, index or current branch: files are hashed
into the object store, a tree is built in a temporary index file (GIT_INDEX_FILE), the commit is made with
`git commit-tree` on top of the base, and the branch is created with `git update-ref` only if it does not exist
yet (an atomic check). Refusals (dirty tree, existing branch, no identity) happen before anything is written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError

ZERO_OID = "0" * 40


class GitError(WorkbenchError):
    """git refused, or the repository is not in a state a proposal can be made from."""


@dataclass
class StatusEntry:
    """One line of `git status --porcelain`: two-letter code and repository-relative path."""

    code: str
    path: str

    def describe(self) -> str:
        kinds = {"??": "untracked", "UU": "unmerged", "AA": "unmerged", "DD": "unmerged"}
        if self.code in kinds:
            return f"{self.path} ({kinds[self.code]})"
        staged, unstaged = self.code[0], self.code[1]
        parts = []
        if staged not in " ?":
            parts.append("staged")
        if unstaged not in " ?":
            parts.append("modified" if unstaged == "M" else "deleted" if unstaged == "D" else "changed")
        return f"{self.path} ({', '.join(parts) or self.code.strip()})"


def _git_exe() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise GitError("git not found", "the git program is not installed or not on PATH",
                       hint="install git (Debian: apt-get install git)")
    return exe


def run_git(repo: Path, args: list[str], *, input_bytes: bytes | None = None,
            env: Mapping[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run `git -C repo ARGS...`; raise GitError with git's own message when it fails and *check* is set."""
    full_env = dict(os.environ)
    full_env.setdefault("LC_ALL", "C")
    full_env["GIT_TERMINAL_PROMPT"] = "0"
    if env:
        full_env.update(env)
    proc = subprocess.run([_git_exe(), "-C", str(repo), *args], input=input_bytes, capture_output=True,
                          env=full_env, check=False)
    if check and proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or proc.stdout.decode("utf-8", "replace").strip()
        raise GitError("git failed", f"git {args[0]}: {msg or f'exit status {proc.returncode}'}", file=str(repo))
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def toplevel(path: Path) -> Path:
    """The top of the git working tree that holds *path*."""
    if not path.exists():
        raise GitError("Not a repository", "no such folder", file=str(path))
    proc = run_git(path, ["rev-parse", "--show-toplevel"], check=False)
    if proc.returncode != 0:
        raise GitError("Not a repository", "this folder is not inside a git working tree", file=str(path),
                       hint="give the workbench's git checkout with --repo DIR")
    return Path(_out(proc)).resolve()


def git_dir(repo: Path) -> Path:
    """The repository's common git folder (shared by all worktrees)."""
    out = _out(run_git(repo, ["rev-parse", "--git-common-dir"]))
    p = Path(out)
    return (p if p.is_absolute() else repo / p).resolve()


def resolve_commit(repo: Path, rev: str) -> str:
    """The full commit id of *rev*; a clear error when it does not name a commit."""
    proc = run_git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], check=False)
    if proc.returncode != 0:
        hint = "the repository has no commit yet: commit something first" if rev == "HEAD" else \
            "give a branch, tag or commit id"
        raise GitError("Unknown revision", f"{rev!r} does not name a commit", file=str(repo), hint=hint)
    return _out(proc)


def status(repo: Path) -> list[StatusEntry]:
    """Every change in the working tree and index, untracked files included (ignored files excluded)."""
    raw = run_git(repo, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none"])
    parts = raw.stdout.decode("utf-8", "surrogateescape").split("\0")
    out: list[StatusEntry] = []
    i = 0
    while i < len(parts):
        item = parts[i]
        i += 1
        if len(item) < 4:
            continue
        code, path = item[:2], item[3:]
        if code[0] in "RC":
            i += 1  # the rename/copy source follows
        out.append(StatusEntry(code, path))
    return out


def operation_in_progress(repo: Path) -> str | None:
    """'merge', 'rebase', 'cherry-pick', 'revert' or 'am' when one is half-done, else None."""
    gdir = Path(_out(run_git(repo, ["rev-parse", "--absolute-git-dir"])))
    for name, what in (("MERGE_HEAD", "merge"), ("rebase-merge", "rebase"), ("rebase-apply", "rebase or am"),
                       ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")):
        if (gdir / name).exists():
            return what
    return None


def check_clean(repo: Path, allowed: Iterable[str]) -> None:
    """Refuse (GitError, exit 2) when anything but the *allowed* repository paths is changed or untracked.

    The allowed paths are the proposal's own files (the profile, its target and overlay files): their
    uncommitted content is what gets proposed. Everything else must be committed first, so that what the
    proposal shows is what the repository holds.
    """
    op = operation_in_progress(repo)
    if op:
        raise GitError("Repository busy", f"a {op} is in progress", file=str(repo),
                       hint=f"finish or abort the {op} first; nothing was changed")
    ok = set(allowed)
    dirty = [e for e in status(repo) if e.path not in ok or e.code in ("UU", "AA", "DD")]
    if dirty:
        shown = [e.describe() for e in dirty[:12]]
        more = f" and {len(dirty) - 12} more" if len(dirty) > 12 else ""
        raise GitError("Working tree not clean",
                       "uncommitted changes outside this proposal's files: " + "; ".join(shown) + more,
                       file=str(repo),
                       hint="commit or stash them first (only the profile and its own target/overlay files may be "
                            "uncommitted: they are what gets proposed); nothing was changed")


def check_branch_name(repo: Path, branch: str) -> None:
    """Refuse a name git would not accept as a branch (or one that looks like an option)."""
    proc = run_git(repo, ["check-ref-format", "--branch", branch], check=False)
    if proc.returncode != 0 or branch.startswith("-"):
        raise GitError("Bad branch name", f"{branch!r} is not a valid branch name", hint="e.g. propose/my-profile")


def branch_exists(repo: Path, branch: str) -> bool:
    """Whether refs/heads/*branch* exists."""
    proc = run_git(repo, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], check=False)
    return proc.returncode == 0


def check_branch_free(repo: Path, branch: str) -> None:
    """Refuse when the branch exists: a proposal never moves or overwrites a branch."""
    check_branch_name(repo, branch)
    if branch_exists(repo, branch):
        tip = _out(run_git(repo, ["rev-parse", "--short", f"refs/heads/{branch}"]))
        raise GitError("Branch exists", f"branch {branch!r} already exists (at {tip})", file=str(repo),
                       hint=f"choose another with --branch, or delete it yourself (git branch -D {branch}) if its "
                            "commits are not needed; nothing was changed")


def check_identity(repo: Path) -> None:
    """git needs a committer name and email; say so before anything is written."""
    for var in ("GIT_COMMITTER_IDENT", "GIT_AUTHOR_IDENT"):
        proc = run_git(repo, ["var", var], check=False)
        if proc.returncode != 0:
            raise GitError("No git identity", "git does not know who is committing", file=str(repo),
                           hint='set it: git config user.name "Your Name"; git config user.email you@example.org')


def path_state(repo: Path, rev: str, path: str, data: bytes) -> str:
    """'new', 'modified' or 'unchanged': *path* with content *data* compared with the file at *rev*."""
    proc = run_git(repo, ["cat-file", "blob", f"{rev}:{path}"], check=False)
    if proc.returncode != 0:
        return "new"
    return "unchanged" if proc.stdout == data else "modified"


def file_mode(path: Path) -> str:
    """Git file mode for a working-tree file (100755 when executable)."""
    try:
        return "100755" if os.access(path, os.X_OK) and path.is_file() else "100644"
    except OSError:
        return "100644"


def commit_files(repo: Path, *, base: str, branch: str, files: Mapping[str, bytes], message: str,
                 replace_dirs: Iterable[str] = (), modes: Mapping[str, str] | None = None) -> str:
    """Commit *files* (repository path -> content) on top of *base* as new branch *branch*; return the commit.

    Folders in *replace_dirs* are emptied first (their content becomes exactly the given files). The user's
    working tree, index and HEAD are not touched. Raises GitError when the branch exists (checked atomically by
    update-ref) or when the commit would change nothing.
    """
    check_branch_name(repo, branch)
    modes = modes or {}
    with tempfile.TemporaryDirectory(prefix="ccis-propose-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run_git(repo, ["read-tree", base], env=env)
        for folder in replace_dirs:
            run_git(repo, ["rm", "--cached", "-r", "-q", "--ignore-unmatch", "--", folder.rstrip("/") + "/"],
                    env=env)
        for path, data in sorted(files.items()):
            oid = _out(run_git(repo, ["hash-object", "-w", "--stdin"], input_bytes=data))
            mode = modes.get(path, "100644")
            run_git(repo, ["update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}"], env=env)
        tree = _out(run_git(repo, ["write-tree"], env=env))
    base_tree = _out(run_git(repo, ["rev-parse", f"{base}^{{tree}}"]))
    if tree == base_tree:
        raise GitError("Nothing to propose", "the proposal's files are already committed exactly as they are",
                       file=str(repo))
    commit = _out(run_git(repo, ["commit-tree", tree, "-p", base, "-F", "-"], input_bytes=message.encode("utf-8")))
    proc = run_git(repo, ["update-ref", "-m", "ccis-workbench propose", f"refs/heads/{branch}", commit, ZERO_OID],
                   check=False)
    if proc.returncode != 0:
        raise GitError("Branch exists", f"could not create branch {branch!r}: "
                       f"{proc.stderr.decode('utf-8', 'replace').strip()}", file=str(repo),
                       hint="choose another with --branch; nothing was changed")
    return commit


def delete_branch(repo: Path, branch: str, expected: str) -> None:
    """Delete *branch* only if it still points at *expected* (undo of a proposal that failed later)."""
    run_git(repo, ["update-ref", "-d", f"refs/heads/{branch}", expected], check=False)


def format_patch(repo: Path, base: str, tip: str, outdir: Path) -> list[Path]:
    """`git format-patch base..tip` into *outdir*; return the patch files in order."""
    outdir.mkdir(parents=True, exist_ok=True)
    proc = run_git(repo, ["format-patch", "--no-signature", "--output-directory", str(outdir), f"{base}..{tip}"])
    paths = [Path(line) for line in _out(proc).splitlines() if line.strip()]
    return [p if p.is_absolute() else repo / p for p in paths]


def push(repo: Path, remote: str, branch: str) -> str:
    """Push *branch* to *remote* under the same name (never forced); return git's report."""
    if remote.startswith("-"):
        raise GitError("Bad remote", f"{remote!r} is not a remote name or URL")
    refspec = f"refs/heads/{branch}:refs/heads/{branch}"
    proc = run_git(repo, ["push", "--porcelain", "--end-of-options", remote, refspec], check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError("Push failed", f"git push {remote}: {msg}", file=str(repo),
                       hint=f"the branch {branch} and the patches are kept; push again: git push {remote} {branch}")
    return _out(proc)


def init_repo(path: Path, message: str) -> str:
    """`git init` *path* (branch main) and commit everything in it; the commit id."""
    run_git(path, ["init", "-q", "-b", "main"])
    check_identity(path)
    run_git(path, ["add", "-A"])
    run_git(path, ["commit", "-q", "-m", message])
    return _out(run_git(path, ["rev-parse", "HEAD"]))


#: Where a contribution is reviewed against, first found wins (a clone's default branch, then local names).
BASE_BRANCH_CANDIDATES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")


def default_base_branch(repo: Path) -> str | None:
    """The branch a contribution in *repo* is compared with: the first of BASE_BRANCH_CANDIDATES that names a
    commit, or None."""
    for ref in BASE_BRANCH_CANDIDATES:
        proc = run_git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
                       check=False)
        if proc.returncode == 0:
            return ref
    return None


def merge_base(repo: Path, base: str, head: str = "HEAD") -> str:
    """Where HEAD left *base* (the commit a branch's changes are counted from); *base* itself when they share
    no history."""
    commit = resolve_commit(repo, base)
    proc = run_git(repo, ["merge-base", "--end-of-options", commit, head], check=False)
    return _out(proc) if proc.returncode == 0 and _out(proc) else commit


def changed_since(repo: Path, commit: str, pathspecs: Iterable[str]) -> set[str]:
    """Repository paths under *pathspecs* (literal folders or files) that differ between *commit* and the working
    tree: committed since, staged, unstaged, deleted or untracked (ignored files excluded)."""
    specs = [f":(literal){p}" for p in pathspecs]
    if not specs:
        return set()
    diff = run_git(repo, ["diff", "--name-only", "-z", "--no-renames", "--end-of-options", commit, "--", *specs])
    new = run_git(repo, ["ls-files", "--others", "--exclude-standard", "-z", "--", *specs])
    names = (diff.stdout + b"\0" + new.stdout).decode("utf-8", "surrogateescape").split("\0")
    return {n for n in names if n}
