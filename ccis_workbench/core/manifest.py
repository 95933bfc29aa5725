"""`manifest.json`: the one reader and writer of a build's manifest.

A build writes it beside its artifacts; boot-test reads it to know which profile's checks apply and whether the
image is a rehearsal image; propose reads it as evidence; the TUI reads it through the same functions. `rehearsal`
is a typed boolean: an image is a rehearsal image because its build said so, never because a word appears
somewhere in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError

MANIFEST_NAME = "manifest.json"
#: Largest manifest read (a build writes a few KiB; a bigger file is not one of ours).
MAX_MANIFEST_BYTES = 4 << 20

#: The typed fields and their JSON types (everything else is kept in `extra`, in order).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "build_id": str, "profile": str, "release": str, "target": str, "arch": str, "kickstart_sha256": str,
    "rehearsal": bool, "install_tree": dict, "domain": str, "uri": str, "accel": str, "domain_type": str,
    "kernel_cmdline": str, "disk_virtual_size": int, "tool_versions": dict, "timings": dict, "artifacts": list,
    "choice": dict, "accel_fallback": dict,
}


@dataclass
class Manifest:
    """What a build records about itself. Unknown keys (added by later versions or by backends) live in `extra`."""

    build_id: str = ""
    profile: str = ""
    release: str = ""
    target: str = ""
    arch: str = "x86_64"
    kickstart_sha256: str = ""
    rehearsal: bool = False
    install_tree: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    uri: str = ""
    accel: str = ""
    domain_type: str = ""
    kernel_cmdline: str = ""
    disk_virtual_size: int = 0
    tool_versions: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    #: release, target, overlays and variables of the composition built (for profiles never saved)
    choice: dict[str, Any] = field(default_factory=dict)
    #: set when `--accel auto` left KVM for TCG: {"from": "kvm", "to": "tcg", "reason": ..., "source": ...}
    accel_fallback: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Where it was read from (not written).
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        data.update(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @property
    def label(self) -> str:
        """How evidence names this build: 'REHEARSAL' stands in front of a rehearsal build, always."""
        return f"REHEARSAL build {self.build_id} (not a CentOS build)" if self.rehearsal else f"build {self.build_id}"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST_NAME) -> Manifest:
        """A Manifest from parsed JSON; a field of the wrong type is an error naming *source*."""
        if not isinstance(data, dict):
            raise WorkbenchError("Bad manifest", "manifest.json must hold a JSON object", file=source)
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            want = _FIELDS.get(key)
            if want is None:
                extra[key] = value
                continue
            # bool is an int in Python: a true/false disk size, or 1/0 for rehearsal, is not what a build writes
            wrong = (not isinstance(value, want) or (want is int and isinstance(value, bool))
                     or (want is bool and not isinstance(value, bool)))
            if value is not None and wrong:
                raise WorkbenchError("Bad manifest", f"field {key!r} should be {_type_name(want)}, not "
                                     f"{type(value).__name__}", file=source,
                                     hint="manifest.json is written by `ccis-workbench build`; rebuild the image")
            if value is not None:
                kwargs[key] = value
        return cls(**kwargs, extra=extra, path=Path(source))

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read and check a manifest file (or the manifest.json inside a folder)."""
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST_NAME
        try:
            if not p.is_file():
                raise WorkbenchError("Bad manifest", "not a regular file", file=str(p))
            if p.stat().st_size > MAX_MANIFEST_BYTES:
                raise WorkbenchError("Bad manifest", f"larger than {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest "
                                     "a build wrote", file=str(p))
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkbenchError("Bad manifest", f"cannot be read: {exc}", file=str(p)) from None
        except (ValueError, RecursionError) as exc:
            raise WorkbenchError("Bad manifest", f"not valid JSON: {exc}", file=str(p)) from None
        return cls.from_dict(data, str(p))

    def write(self, folder: Path) -> Path:
        """Write manifest.json into *folder* (the artifact writer calls this inside its temporary folder)."""
        target = folder / MANIFEST_NAME
        target.write_text(self.to_json(), encoding="utf-8")
        return target


def find_manifest(folder: Path) -> Manifest | None:
    """The manifest in *folder*, or None when the folder has none."""
    return Manifest.read(folder) if (folder / MANIFEST_NAME).is_file() else None


def _type_name(want: type | tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", dict: "an object", list: "a list"}
    return names.get(want, str(want)) if isinstance(want, type) else " or ".join(t.__name__ for t in want)
