"""The domain model: releases, targets, overlays, profiles and checks (plain dataclasses, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A cloud-init or agent name -> the package that provides it (used by lint and by the boot test).
AGENTS = ("cloud-init", "one-context", "google-guest-agent", "none")
#: Every output format the build knows how to produce.
FORMATS = ("qcow2", "raw", "vmdk", "vhd", "ova", "gce-tar", "vagrant-libvirt", "rootfs-tar")
#: Formats that are not disk images: a target whose formats are all of these makes a container image, and its
#: image is checked without booting (docs/architecture.md, "Boot tests").
CONTAINER_FORMATS = ("rootfs-tar",)
#: Where a boot-test check can run: in the booted guest ("vm") or in the container made from the rootfs tar.
CONTEXTS = ("vm", "container")
#: The boot-test seed a target expects.
SEEDS = ("nocloud", "configdrive", "opennebula", "none")
#: The final command each build backend wants (docs/catalog-facts.md, sig-cloud-instance-build issue 56).
BACKEND_FINAL_COMMAND = {"libvirt": "poweroff", "koji": "reboot", "imagefactory": "reboot",
                         "livemedia-creator": "shutdown"}


@dataclass(frozen=True)
class Origin:
    """Where a piece of the merged kickstart came from: layer label plus catalog-relative file and line."""

    layer: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class Check:
    """One boot-test check: a command run in the guest and what its result must be."""

    id: str
    description: str
    command: str
    exit_status: int = 0
    output: str | None = None  # a regular expression the output must match
    timeout: int = 60
    releases: list[str] | None = None  # None: every release
    targets: list[str] | None = None
    origin: Origin | None = None
    agents: list[str] | None = None  # None: whatever the image's first-boot agent
    runs_in: tuple[str, ...] = ("vm",)  # CONTEXTS: a booted guest, the container made from a rootfs tar, or both


@dataclass
class Repo:
    name: str
    url: str  # may contain {arch}
    redistributable: bool = True


@dataclass
class Release:
    name: str
    title: str
    pykickstart: str  # "RHEL9"
    arches: list[str]
    tree: str  # install tree URL template with {arch}
    repos: list[Repo]
    stage2: str
    eol: bool
    vault: bool
    baseline: str  # catalog-relative template path
    kernel_args: list[str]
    notes: list[str]
    source: str
    checks: list[Check] = field(default_factory=list)
    #: core.ledger.Explanation: differences from the official kickstarts its baseline makes on every target
    fidelity: list[Any] = field(default_factory=list)

    def tree_url(self, arch: str) -> str:
        return expand_arch(self.tree, arch)


def expand_arch(url: str, arch: str) -> str:
    """A catalog URL with its `{arch}` placeholder filled in: plain replacement, never str.format (a catalog's
    `{arch.__class__}` would be evaluated); the catalog refuses any other brace when it loads."""
    return url.replace("{arch}", arch)


@dataclass
class LayerSpec:
    """What targets and overlays have in common: declared packages, services, kernel args and a fragment."""

    name: str
    title: str
    description: str
    releases: list[str]
    arches: list[str]
    packages: list[str]
    packages_lines: list[int]
    services_enabled: list[str]
    services_disabled: list[str]
    services_lines: dict[str, int]
    kernel_args: list[str]
    kernel_args_lines: list[int]
    fragment: str | None  # catalog-relative template path
    checks: list[Check]
    waivers: dict[str, str]
    source: str  # catalog-relative path of the YAML


@dataclass
class Target(LayerSpec):
    agent: str = "cloud-init"
    datasources: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    seed: str = "nocloud"
    default_user: str | None = None
    #: the fidelity ledger: core.ledger.LedgerEntry per release (the official kickstart followed, differences)
    fidelity: list[Any] = field(default_factory=list)
    #: release -> the firmwares its official image boots with ("bios", "uefi"); a release not named: BIOS only
    firmware: dict[str, list[str]] = field(default_factory=dict)

    def firmwares(self, release: str) -> list[str]:
        """The firmwares the target's image on *release* claims to boot with (boot-test's default)."""
        return list(self.firmware.get(release) or ["bios"])

    @property
    def context(self) -> str:
        """Where its image is checked: "container" when every format is a container format, else "vm"."""
        return "container" if self.formats and all(f in CONTAINER_FORMATS for f in self.formats) else "vm"


@dataclass
class VariableSpec:
    """A variable an overlay declares: type, default and an optional pattern its value must match."""

    name: str
    type: str  # "str" | "int" | "bool" | "list"
    default: Any
    pattern: str | None
    description: str


@dataclass
class Overlay(LayerSpec):
    requires: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    targets: list[str] | None = None  # None: every target (less exclude_targets)
    exclude_targets: list[str] = field(default_factory=list)
    #: False for overlays whose images must never be published (debug-install): `propose` refuses them
    publishable: bool = True
    #: line of `publishable:` in the overlay's file (for the refusal's file:line)
    publishable_line: int = 0

    def applies_to(self, target: str) -> bool:
        """Whether the overlay may be put on *target* (its targets list, or every target but the excluded)."""
        if self.targets is not None:
            return target in self.targets
        return target not in self.exclude_targets
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    agent: str | None = None  # an overlay may replace the target's agent (e.g. one-context)


@dataclass
class Profile:
    """A saved choice: release + target + overlays + variables + the profile's own kickstart lines."""

    name: str
    release: str
    target: str
    overlays: list[str]
    variables: dict[str, Any]
    description: str = ""
    kickstart: str = ""
    kickstart_line: int = 0  # line in the YAML where the kickstart block's first line is
    checks: list[Check] = field(default_factory=list)
    waivers: dict[str, str] = field(default_factory=dict)  # lint rule id or name -> reason
    source: str | None = None  # path of the YAML, None for an ad-hoc choice
    lines: dict[str, int] = field(default_factory=dict)  # key -> line in the YAML
    fidelity: list[Any] = field(default_factory=list)  # core.ledger.Explanation: the profile's own differences
