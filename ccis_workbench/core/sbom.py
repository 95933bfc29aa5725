"""The software bill of materials of an image: SPDX 2.3 JSON from the installed package list.

SPDX (not CycloneDX) because it is what the Linux distributions and the SIG's peers publish for OS images, and
because its JSON form is a plain document this module writes without a library at run time; the tests validate
every document with the SPDX project's own `spdx-tools`. Each package is one SPDX package with its NEVRA as
version information and a `pkg:rpm` package URL; a rehearsal image says so in the document's name and comment.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ccis_workbench.core.errors import WorkbenchError

SBOM_NAME = "sbom.spdx.json"

#: name-[epoch:]version-release.arch, as `rpm -qa` prints it (name may hold dashes).
_NEVRA = re.compile(r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-]+)\.(?P<arch>[^.]+)$")


@dataclass(frozen=True)
class RpmPackage:
    """One installed package."""

    name: str
    epoch: str
    version: str
    release: str
    arch: str
    repository: str = ""

    @property
    def evr(self) -> str:
        return f"{self.epoch + ':' if self.epoch else ''}{self.version}-{self.release}"

    @property
    def purl(self) -> str:
        qualifiers = [f"arch={self.arch}"] + ([f"epoch={self.epoch}"] if self.epoch else []) + \
            ([f"repository_id={self.repository}"] if self.repository else [])
        return f"pkg:rpm/centos/{self.name}@{self.version}-{self.release}?{'&'.join(qualifiers)}"


def parse_packages(lines: list[str], source: str = "packages.txt", *, strict: bool = True) -> list[RpmPackage]:
    """Packages from `rpm -qa`-style lines (`NEVRA`, or `NEVRA REPOSITORY`). A line that is neither is an error
    naming its line; with *strict* off (a build's own list: an SBOM must not fail a finished build) it becomes a
    package whose version is unknown."""
    out = []
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        nevra, _, repo = text.partition(" ")
        m = _NEVRA.match(nevra)
        if not m:
            if not strict:
                out.append(RpmPackage(nevra, "", "NOASSERTION", "NOASSERTION", "noarch", repo.strip()))
                continue
            raise WorkbenchError("Bad package list", f"not name-version-release.arch: {text[:80]!r}", file=source,
                                 line=n)
        out.append(RpmPackage(m["name"], m["epoch"] or "", m["version"], m["release"], m["arch"], repo.strip()))
    return out


def spdx_time(iso: str) -> str:
    """An ISO 8601 time as SPDX writes it: UTC, seconds, a trailing Z."""
    import datetime

    when = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spdx_id(pkg: RpmPackage) -> str:
    digest = hashlib.sha256(f"{pkg.name}|{pkg.evr}|{pkg.arch}".encode()).hexdigest()[:12]
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", pkg.name) + "-" + digest


def spdx_document(image: str, packages: list[RpmPackage], *, created: str, rehearsal: bool,
                  kickstart_sha256: str, tool: str) -> dict[str, Any]:
    """An SPDX 2.3 document describing *image* (the artifact's file name) and the packages it contains."""
    label = "REHEARSAL image (not CentOS)" if rehearsal else "CentOS image"
    namespace = hashlib.sha256(f"{image}|{kickstart_sha256}|{created}".encode()).hexdigest()
    image_id = "SPDXRef-Image"
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image}{' (REHEARSAL, not CentOS)' if rehearsal else ''}",
        "documentNamespace": f"https://ccis-workbench.invalid/spdx/{namespace}",
        "comment": f"{label}; built from a kickstart with sha256 {kickstart_sha256}",
        "creationInfo": {"created": spdx_time(created), "creators": [f"Tool: {tool}"]},
        "documentDescribes": [image_id],
        "packages": [{
            "SPDXID": image_id, "name": image, "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING-SYSTEM", "comment": label,
        }],
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                           "relatedSpdxElement": image_id}],
    }
    for pkg in packages:
        pid = _spdx_id(pkg)
        entry: dict[str, Any] = {
            "SPDXID": pid, "name": pkg.name, "versionInfo": f"{pkg.evr}.{pkg.arch}",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "supplier": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": pkg.purl}],
        }
        if pkg.repository:
            entry["sourceInfo"] = f"installed from repository {pkg.repository}"
        doc["packages"].append(entry)
        doc["relationships"].append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                                     "relatedSpdxElement": pid})
    return doc


def sbom_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def packages_of_sbom(doc: dict[str, Any]) -> list[str]:
    """The NEVRAs an SBOM lists (to compare with packages.txt)."""
    return [f"{p['name']}-{p['versionInfo']}" for p in doc.get("packages", []) if p.get("SPDXID") != "SPDXRef-Image"]
