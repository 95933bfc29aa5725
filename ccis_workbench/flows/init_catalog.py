"""`ccis-workbench init DIR`: a new catalog for a contributor, as a git repository with a first commit.

A full copy of the catalog that came with the package, or (`minimal`) a skeleton that composes: every release and
baseline, the image test spec, one example target (openstack), one example overlay (epel) and one profile.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.flows.settings import is_catalog

#: What a minimal catalog keeps (paths relative to the catalog; directories are copied whole).
#: Shared pieces (`_*.ks.j2`, included by fragments) come along with the targets and overlays.
MINIMAL = ("kickstarts/releases", "kickstarts/baseline", "kickstarts/testspec.yaml",
           "kickstarts/targets/openstack.yaml", "kickstarts/targets/openstack.ks.j2", "kickstarts/targets/_*",
           "kickstarts/overlays/epel.yaml", "kickstarts/overlays/epel.ks.j2", "kickstarts/overlays/_*",
           "profiles/openstack-stream9.yaml")


def init_catalog(source: Path, dest: Path, *, minimal: bool = False) -> list[str]:
    """Copy the catalog at *source* into the new directory *dest* and commit it; the copied paths."""
    from ccis_workbench import gitops

    if not is_catalog(source):
        raise WorkbenchError("No catalog to copy", f"{source} holds no kickstarts/ and profiles/", file=str(source))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise WorkbenchError("Folder not empty", "a new catalog goes into a new or empty folder", file=str(dest),
                             hint="choose another folder; nothing was written")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        copied: list[str] = []
        parts = MINIMAL if minimal else ("kickstarts", "profiles")
        expanded = [str(p.relative_to(source)) for rel in parts
                    for p in (sorted(source.glob(rel)) if "*" in rel else [source / rel])]
        for rel in expanded:
            src = source / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                                dirs_exist_ok=True)
            elif src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
            else:
                continue
            copied.append(rel)
        (dest / "profiles").mkdir(exist_ok=True)
        (dest / "README.md").write_text(
            "# A CCIS Workbench catalog\n\nRun `ccis-workbench` in this folder: it is found like git finds its "
            "repository.\n`kickstarts/` holds releases, baselines, targets and overlays; `profiles/` the saved "
            "choices.\n`ccis-workbench propose PROFILE` commits to this repository.\n", encoding="utf-8")
        gitops.init_repo(dest, "Catalog created by ccis-workbench init" + (" (minimal)" if minimal else ""))
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        raise
    return copied
