"""The review hand-offs, written once for both faces: what a composition is diffed against.

"Against the baseline" means the release's SIG baseline composed alone with default variables (only `arch` is
taken from the profile): a profile's own choices, such as its time zone, show in the diff. The CLI's `diff`, the
TUI's Diff tab and `propose`'s evidence all call `diff_against_baseline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError


def diff_against_baseline(composer: Any, comp: Any) -> Any:
    """The composition against its release's baseline (a core.diff.DiffResult)."""
    from ccis_workbench.core import diff as kdiff

    return kdiff.diff_compositions(composer.compose_baseline(comp.release.name, comp.variables), comp)


def baseline_label(comp: Any) -> str:
    return f"baseline {comp.release.name} ({comp.release.baseline}, default variables)"


def diff_against_file(comp: Any, path: str | Path) -> Any:
    """The composition against any kickstart file (its pykickstart version detected, else the release's)."""
    from ccis_workbench.core import diff as kdiff
    from ccis_workbench.core.lint import detect_version
    from ccis_workbench.core.textfile import read_text

    text = read_text(Path(path), what="kickstart")
    version = detect_version(text) or comp.version
    return kdiff.diff_texts(text, comp.text, version, a_label=str(path), b_label=f"profile {comp.profile.name}")


def diff_against_profile(catalog: Any, composer: Any, comp: Any, other: str) -> Any:
    """The composition against another saved profile."""
    from ccis_workbench.core import diff as kdiff

    return kdiff.diff_compositions(composer.compose(catalog.load_profile(other)), comp)


def diff_against_rev(catalog: Any, composer: Any, comp: Any, rev: str) -> Any:
    """The composition against its own profile file as it was at git revision *rev*."""
    from ccis_workbench.core import diff as kdiff

    if not comp.profile.source:
        raise WorkbenchError("Bad argument", "a diff against a revision needs a saved profile file, not an "
                             "unsaved choice or --release/--target", hint="save the profile first")
    old_text = kdiff.profile_at_revision(catalog.root, comp.profile.source, rev)
    old_profile = catalog.parse_profile_text(old_text, f"{comp.profile.source}@{rev}")
    return kdiff.diff_compositions(composer.compose(old_profile), comp)


def explain_differences(comp: Any, path: str | Path | None = None) -> tuple[Any, Any]:
    """The composition against the official kickstart its target follows, every difference explained or not.

    *path* is the official file itself; without it, the facts the ledger records of that file stand in for it.
    Returns (core.diff.KickstartDiff, core.ledger.Explained). No ledger entry for the target and release is bad
    input (the target's YAML is named).
    """
    from ccis_workbench.core import diff as kdiff
    from ccis_workbench.core import ledger

    entry, explanations, shared = ledger.explanations_for(comp)
    if entry is None:
        where = comp.target.source if comp.target is not None else comp.release.source
        raise WorkbenchError("No fidelity ledger", f"{comp.target.name if comp.target else 'the baseline'} records "
                             f"no official kickstart it follows on {comp.release.name}", file=where,
                             hint="add a `fidelity:` entry for the release (see core/ledger.py), or diff without "
                             "--explain")
    if path is not None:
        result = diff_against_file(comp, path)
    else:
        official = ledger.facts_handler(entry, comp.version)
        text, _ = ledger.facts_kickstart(entry)
        side = kdiff.Side(f"facts of {entry.follows.name} ({entry.file}:{entry.line})", comp.version, official,
                          kdiff.canonical_text(text, comp.version))
        result = kdiff.diff_sides(side, kdiff.Side.from_composition(comp, f"profile {comp.profile.name}"))
    return result, ledger.explain(result.semantic, explanations, entry.follows, shared)
