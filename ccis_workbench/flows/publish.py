"""`publish`: lay built images out the way cloud.centos.org does, with their evidence.

    DEST/<release>/<arch>/images/CentOS-<Release>-<Target>-<YYYYMMDD>.<n>.<arch>.<ext>
                                 ... .spdx.json, .provenance.intoto.json, .ks beside each image
                                 CentOS-<Release>-<Target>-latest.<arch>.<ext>   (a symlink to the newest)
                                 CHECKSUM (+ CHECKSUM.asc): every file of the folder, signed when a key is set

Rehearsal builds are refused unless allowed, and then go under DEST/rehearsal/ only, named REHEARSAL-...: they
can never sit beside CentOS images. A published file is never overwritten; each file appears whole (written under
a temporary name, then renamed), and CHECKSUM is rewritten last, atomically. Only local folders are written here;
push the tree to a mirror with rsync afterwards (the tree is what rsync expects).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.manifest import Manifest

#: Image formats that are published (logs, manifests and kickstarts of the build stay in its folder).
IMAGE_SUFFIXES = (".qcow2", ".raw", ".vmdk", ".vhd", ".box", ".ova", ".tar.gz", ".tar.xz")


@dataclass
class Published:
    """What one publish wrote."""

    folder: Path
    files: list[str] = field(default_factory=list)
    latest: list[str] = field(default_factory=list)
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "files": self.files, "latest": self.latest, "signed": self.signed}


def release_title(release: str) -> str:
    """centos-stream-9 -> Stream-9, centos-7 -> 7 (CentOS's own file names)."""
    rest = release.removeprefix("centos-")
    return "Stream-" + rest.removeprefix("stream-") if rest.startswith("stream-") else rest


def _suffix(name: str) -> str:
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def _link_or_copy(src: Path, dest: Path) -> None:
    """*src* to *dest* whole: a temporary name in dest's folder, then a rename that refuses to replace."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        shutil.copyfile(src, tmp)
        os.link(tmp, dest)  # fails when dest exists: a published file is never replaced
    except FileExistsError:
        raise WorkbenchError("Already published", "a published file is never overwritten", file=str(dest),
                             hint="publish a new build (a new date or serial is chosen for it)") from None
    finally:
        tmp.unlink(missing_ok=True)


def publish(artifact_dir: Path, dest: Path, *, allow_rehearsal: bool = False, sign_key: str = "") -> Published:
    """Publish one build's artifact folder into the tree at *dest*."""
    from ccis_workbench.core.artifacts import checksum_text

    manifest = Manifest.read(artifact_dir)
    if manifest.rehearsal and not allow_rehearsal:
        raise WorkbenchError("Rehearsal build", "a REHEARSAL build is not CentOS and is not published beside CentOS "
                             "images", file=str(artifact_dir),
                             hint="--allow-rehearsal publishes it under rehearsal/ only, named REHEARSAL-...")
    images = [a["file"] for a in manifest.artifacts if isinstance(a.get("file"), str) and _suffix(a["file"])]
    if not images:
        raise WorkbenchError("Nothing to publish", "the build lists no image artifact", file=str(artifact_dir))
    top = dest / "rehearsal" if manifest.rehearsal else dest
    folder = top / manifest.release / manifest.arch / "images"
    folder.mkdir(parents=True, exist_ok=True)
    date = (manifest.build_id or "")[:8] if re.match(r"\d{8}", manifest.build_id or "") else "00000000"
    prefix = ("REHEARSAL-" if manifest.rehearsal else "") + f"CentOS-{release_title(manifest.release)}-" \
        f"{manifest.target or 'image'}"
    serial = 0
    while any(p.name.startswith(f"{prefix}-{date}.{serial}.") for p in folder.iterdir()):
        serial += 1
    out = Published(folder)
    ks = next((artifact_dir / a["file"] for a in manifest.artifacts if str(a.get("file", "")).endswith(".ks")), None)
    for image in images:
        ext = _suffix(image)
        stem = f"{prefix}-{date}.{serial}.{manifest.arch}"
        name = f"{stem}{ext}"
        _link_or_copy(artifact_dir / image, folder / name)
        out.files.append(name)
        for src, suffix in ((artifact_dir / "sbom.spdx.json", ".spdx.json"),
                            (artifact_dir / "provenance.intoto.json", ".provenance.intoto.json"), (ks, ".ks")):
            if src is not None and src.is_file() and not (folder / f"{stem}{suffix}").exists():
                _link_or_copy(src, folder / f"{stem}{suffix}")
                out.files.append(f"{stem}{suffix}")
        latest = folder / f"{prefix}-latest.{manifest.arch}{ext}"
        tmp_link = latest.with_name(f".{latest.name}.new")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(name)
        os.replace(tmp_link, latest)  # the latest name moves to the new image in one step
        out.latest.append(latest.name)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name not in ("CHECKSUM", "CHECKSUM.asc"))
    tmp = folder / ".CHECKSUM.new"
    tmp.write_text(checksum_text(files), encoding="utf-8")
    if sign_key:
        sig_tmp = folder / ".CHECKSUM.asc.new"
        proc = subprocess.run(["gpg", "--batch", "--yes", "--local-user", sign_key, "--armor", "--detach-sign",
                               "--output", str(sig_tmp), str(tmp)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise WorkbenchError("Signing failed", proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                                 else f"gpg exit {proc.returncode}", hint="check --sign-key and gpg's keyring")
        os.replace(tmp, folder / "CHECKSUM")
        os.replace(sig_tmp, folder / "CHECKSUM.asc")
        out.signed = True
    else:
        os.replace(tmp, folder / "CHECKSUM")
        (folder / "CHECKSUM.asc").unlink(missing_ok=True)  # a stale signature would not match the new CHECKSUM
    return out
