"""The build's provenance: an in-toto Statement (v1) with a SLSA Provenance v1 predicate.

Subjects are every artifact with its sha256. The build definition holds what was built (profile, release, target,
overlays, the flattened kickstart's sha256, the catalog's git commit and whether its working tree was dirty); the
resolved dependencies are the install tree (its `.treeinfo` identity) and the kernel and initrd the guest booted;
the builder is the workbench with the libvirt, qemu and accelerator it used. A rehearsal build says so in the
build definition and the builder id, so its attestation can never pass for a CentOS build's.
"""

from __future__ import annotations

import json
from typing import Any

PROVENANCE_NAME = "provenance.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://ccis-workbench.invalid/build/libvirt-kickstart/v1"


def statement(*, subjects: dict[str, str], manifest: dict[str, Any], catalog: dict[str, Any],
              dependencies: list[dict[str, Any]], started: str, finished: str, host: str) -> dict[str, Any]:
    """The in-toto Statement for one build. *subjects*: file name -> sha256; *manifest*: the build's manifest
    (core.manifest.Manifest.to_dict()); *catalog*: {"path", "commit", "dirty"}; *dependencies*: SLSA
    ResourceDescriptors (name, uri, digest)."""
    rehearsal = bool(manifest.get("rehearsal"))
    choice = manifest.get("choice") or {}
    versions = manifest.get("tool_versions") or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "profile": manifest.get("profile"), "release": manifest.get("release"),
                    "target": manifest.get("target"), "overlays": choice.get("overlays", []),
                    "variables": choice.get("variables", {}), "arch": manifest.get("arch"),
                    "kickstart": {"sha256": manifest.get("kickstart_sha256")},
                    "catalog": catalog, "rehearsal": rehearsal,
                },
                "internalParameters": {"accel": manifest.get("accel"), "domain_type": manifest.get("domain_type"),
                                       "kernel_cmdline": manifest.get("kernel_cmdline")},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": f"https://ccis-workbench.invalid/builder/{'rehearsal' if rehearsal else 'libvirt'}",
                    "version": {k: str(v) for k, v in versions.items()},
                },
                "metadata": {"invocationId": manifest.get("build_id"), "startedOn": started,
                             "finishedOn": finished, "host": host, "libvirt": manifest.get("libvirt_version")},
            },
        },
    }


def statement_json(st: dict[str, Any]) -> str:
    return json.dumps(st, indent=2, sort_keys=False) + "\n"


def check_statement(st: Any, source: str = PROVENANCE_NAME) -> list[str]:
    """What is wrong with a statement's shape (the fields verify relies on), as messages; [] when sound."""
    problems: list[str] = []
    if not isinstance(st, dict):
        return [f"{source}: not a JSON object"]
    if st.get("_type") != STATEMENT_TYPE:
        problems.append(f"{source}: _type is not {STATEMENT_TYPE}")
    if st.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"{source}: predicateType is not {PREDICATE_TYPE}")
    subjects = st.get("subject")
    if not isinstance(subjects, list) or not subjects or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get("sha256"), str) for s in subjects):
        problems.append(f"{source}: subject must be a list of {{name, digest: {{sha256}}}}")
    pred = st.get("predicate")
    bd = pred.get("buildDefinition") if isinstance(pred, dict) else None
    if not isinstance(bd, dict) or bd.get("buildType") != BUILD_TYPE or \
            not isinstance(bd.get("externalParameters"), dict):
        problems.append(f"{source}: predicate.buildDefinition is missing or not a {BUILD_TYPE} build")
    return problems
