"""CLI commands over the core: list, render, blame, diff, lint. None of them imports textual or libvirt."""

from __future__ import annotations

import argparse
import sys
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

FAILING_SEVERITIES = ("error", "warning")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", help="list releases, targets, overlays or profiles")
    p.add_argument("what", choices=("releases", "targets", "overlays", "profiles"))
    p.add_argument("--names", action="store_true", help="names only, one a line (for shell completion)")
    add_json(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("render", help="print the merged kickstart of a profile")
    add_choice_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("blame", help="show which layer file:line produced each line of the merged kickstart")
    add_choice_arguments(p)
    p.add_argument("--overrides", action="store_true", help="list only the overrides between layers")
    p.set_defaults(func=cmd_blame)

    p = sub.add_parser("diff", help="diff the merged kickstart against the baseline, a file, a profile or a "
                       "git revision (exit 1 when they differ)")
    add_choice_arguments(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--against-file", metavar="KS", help="a kickstart file (any release; #version= or this "
                   "profile's release decides the syntax)")
    g.add_argument("--against-profile", metavar="PROFILE", help="another profile (name or YAML path)")
    g.add_argument("--against-rev", metavar="REV", help="the same profile file at a git revision, e.g. HEAD~1")
    p.add_argument("--semantic-only", action="store_true", help="print the semantic summary only")
    p.add_argument("--explain", action="store_true",
                   help="against the official kickstart the target follows (--against-file, else the facts its "
                   "fidelity ledger records): mark each difference explained (with its reason) or unexplained; "
                   "exit 1 on any unexplained one")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("lint", help="lint a profile's merged kickstart, or any kickstart file (exit 1 on findings)")
    add_choice_arguments(p)
    p.add_argument("--file", metavar="KS", help="lint this kickstart file instead of a profile")
    p.add_argument("--version", dest="ks_version", metavar="RHELn",
                   help="syntax for --file (default: its #version= line, else --release's, else RHEL9)")
    p.add_argument("--backend", choices=("libvirt", "koji", "imagefactory", "livemedia-creator", "none"),
                   help="build backend whose final command and install source are checked "
                        "(default: libvirt for profiles, none for files)")
    p.add_argument("--rules", action="store_true", help="list the lint rules (id, name, severity) and exit")
    p.set_defaults(func=cmd_list_rules_or_lint)


# -- list ------------------------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    cat = load_catalog(args)
    if args.names:
        names = {"releases": list(cat.releases), "targets": sorted(cat.targets), "overlays": sorted(cat.overlays),
                 "profiles": cat.profile_names()}[args.what]
        print("\n".join(names))
        return 0
    rows: list[dict[str, Any]] = []
    if args.what == "releases":
        rows = [{"name": r.name, "title": r.title, "pykickstart": r.pykickstart, "arches": r.arches,
                 "eol": r.eol, "tree": r.tree} for r in cat.releases.values()]
    elif args.what == "targets":
        rows = [{"name": t.name, "title": t.title, "agent": t.agent, "formats": t.formats,
                 "releases": t.releases} for t in sorted(cat.targets.values(), key=lambda t: t.name)]
    elif args.what == "overlays":
        rows = [{"name": o.name, "title": o.title, "requires": o.requires, "conflicts": o.conflicts,
                 "releases": o.releases,
                 "targets": o.targets if o.targets is not None else [t for t in sorted(cat.targets) if o.applies_to(t)]}
                for o in sorted(cat.overlays.values(), key=lambda o: o.name)]
    else:
        for name in cat.profile_names():
            prof = cat.load_profile(name)
            rows.append({"name": prof.name, "release": prof.release, "target": prof.target,
                         "overlays": prof.overlays, "description": prof.description})
    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        if args.what == "releases":
            extra = f"{row['pykickstart']:7} {','.join(row['arches'])}{'  (EOL, vault)' if row['eol'] else ''}"
        elif args.what == "targets":
            extra = f"agent={row['agent']:18} formats={','.join(row['formats'])}"
        elif args.what == "overlays":
            extra = f"requires={','.join(row['requires']) or '-'} conflicts={','.join(row['conflicts']) or '-'}"
        else:
            extra = f"{row['release']:17} {row['target']:11} {'+'.join(row['overlays'])}"
        title = row.get("title", "")
        print(f"{row['name']:22} {extra}" + (f"  {title}" if title and args.what != "profiles" else ""))
    return 0


# -- render / blame --------------------------------------------------------------------------------------------

def compose_from_args(args: argparse.Namespace) -> Any:
    from ccis_workbench.core.compose import Composer

    cat = load_catalog(args, lazy=True)  # the profile's layers only: a broken unrelated overlay is lint's to report
    profile = profile_from_args(cat, args)
    composer = Composer(cat)
    return cat, composer, composer.compose(profile)


def _warn_overrides(comp: Any) -> None:
    for o in comp.overrides:
        print(f"override: {o.message()}", file=sys.stderr)


def cmd_render(args: argparse.Namespace) -> int:
    _, _, comp = compose_from_args(args)
    if args.json:
        emit_json({"profile": comp.profile.name, "release": comp.release.name, "version": comp.version,
                   "kickstart": comp.text, "overrides": [o.to_dict() for o in comp.overrides]})
        return 0
    _warn_overrides(comp)
    if args.output:
        write_atomic(args.output, comp.text)
    else:
        sys.stdout.write(comp.text)
    return 0


def cmd_blame(args: argparse.Namespace) -> int:
    _, _, comp = compose_from_args(args)
    if args.json:
        emit_json({"lines": [{"number": ln.number, "text": ln.text, "overridden": ln.overridden,
                              "origins": [{"layer": o.layer, "file": o.file, "line": o.line} for o in ln.origins]}
                             for ln in comp.lines],
                   "overrides": [o.to_dict() for o in comp.overrides]})
        return 0
    if args.overrides:
        for o in comp.overrides:
            print(o.message())
        return 0
    width = max((len(str(ln.origin)) for ln in comp.lines if ln.origin), default=10)
    for ln in comp.lines:
        where = str(ln.origin) if ln.origin else "(generated)"
        more = f" +{len(ln.origins) - 1}" if len(ln.origins) > 1 else ""
        mark = "!" if ln.overridden else " "
        print(f"{ln.number:4} {where:<{width}}{more:4}{mark} {ln.text}")
    if comp.overrides:
        print(f"\n{len(comp.overrides)} override(s) (! marks the lines involved):")
        for o in comp.overrides:
            print(f"  {o.message()}")
    return 0


# -- diff ------------------------------------------------------------------------------------------------------

def cmd_diff(args: argparse.Namespace) -> int:
    from ccis_workbench.flows import review

    cat, composer, comp = compose_from_args(args)
    if args.explain:
        return _explain(args, comp)
    if args.against_file:
        result = review.diff_against_file(comp, args.against_file)
    elif args.against_profile:
        result = review.diff_against_profile(cat, composer, comp, args.against_profile)
    elif args.against_rev:
        result = review.diff_against_rev(cat, composer, comp, args.against_rev)
    else:
        result = review.diff_against_baseline(composer, comp)
    differs = bool(result.unified) or not result.semantic.is_empty()
    if args.json:
        emit_json(result.to_dict())
        return 1 if differs else 0
    print(f"# {result.a_label} -> {result.b_label}")
    lines = result.semantic.summary_lines()
    print("\n".join(lines) if lines else "no semantic difference")
    if not args.semantic_only and result.unified:
        print()
        sys.stdout.write(result.unified if result.unified.endswith("\n") else result.unified + "\n")
    return 1 if differs else 0


def _explain(args: argparse.Namespace, comp: Any) -> int:
    from ccis_workbench.flows import review

    if args.against_profile or args.against_rev:
        raise WorkbenchError("Bad argument", "--explain compares with the official kickstart: give --against-file "
                             "OFFICIAL.ks or no --against-* option (the ledger's facts)")
    result, explained = review.explain_differences(comp, args.against_file)
    if args.json:
        emit_json(dict(explained.to_dict(), a_label=result.a_label, b_label=result.b_label))
        return 1 if explained.unexplained else 0
    print(f"# {result.a_label} -> {result.b_label}")
    print(f"# follows {explained.follows}")
    for item in explained.items:
        e = item.explanation
        if e is None:
            print(f"UNEXPLAINED  {item.difference.summary}")
        else:
            print(f"explained    {item.difference.summary}\n             because {e.reason} ({e.where})")
    for e in explained.stale:
        print(f"stale        {e.key}: matches no difference ({e.where})")
    print(f"{len(explained.items)} difference(s): {len(explained.explained)} explained, "
          f"{len(explained.unexplained)} unexplained, {len(explained.stale)} stale explanation(s)")
    return 1 if explained.unexplained else 0


# -- lint ------------------------------------------------------------------------------------------------------

def cmd_list_rules_or_lint(args: argparse.Namespace) -> int:
    from ccis_workbench.core import lint

    if args.rules:
        rules = sorted(lint.RULES.values(), key=lambda r: r.id)
        if args.json:
            emit_json([{"id": r.id, "name": r.name, "severity": r.severity, "title": r.title,
                        "explanation": r.explanation} for r in rules])
        else:
            for r in rules:
                print(f"{r.id:8} {r.name:26} {r.severity:8} {r.title}")
        return 0
    backend = None if args.backend == "none" else args.backend
    if args.file:
        from ccis_workbench.core.textfile import read_text

        if args.profile or args.target or args.overlay:
            raise WorkbenchError("Bad argument", "give --file or a profile, not both")
        text = read_text(args.file, what="kickstart")
        version = args.ks_version or lint.detect_version(text)
        if args.release:  # an unknown release is bad input even when the file names its version
            releases = load_catalog(args).releases
            if args.release not in releases:
                raise WorkbenchError("Unknown release", f"--release {args.release!r} is not a release of the catalog",
                                     hint=f"known releases: {', '.join(releases)}")
            version = version or releases[args.release].pykickstart
        findings = lint.lint_text(text, version or "RHEL9", filename=args.file, backend=backend)
        label = args.file
    else:
        _, _, comp = compose_from_args(args)
        findings = lint.lint_composition(comp, backend=backend or "libvirt")
        label = f"profile {comp.profile.name}"
    failing = [f for f in findings if f.severity in FAILING_SEVERITIES and not f.waived]
    if args.json:
        emit_json({"subject": label, "findings": [f.to_dict() for f in findings], "failing": len(failing)})
        return 1 if failing else 0
    for f in findings:
        where = f"line {f.line}" if f.line else "file"
        origin = f" ({f.origin})" if getattr(f, "origin", None) else ""
        waived = f" [waived: {f.waived}]" if f.waived else ""
        print(f"{where:>9}: {f.severity:7} {f.id} {f.name}: {f.message}{origin}{waived}")
    counts = {s: sum(1 for f in findings if f.severity == s and not f.waived) for s in ("error", "warning", "info")}
    waived_n = sum(1 for f in findings if f.waived)
    print(f"{label}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)"
          + (f", {waived_n} waived" if waived_n else ""))
    return 1 if failing else 0
