"""Hand a profile to the SIG's build farm: a kickstart for koji and a `koji image-build --config` file.

koji's image-build (ImageFactory/Oz on the builders) reads an INI file with one [image-build] section whose keys
are the client's own option names (koji_cli/commands.py, handle_image_build): the positional `name`, `version`,
`target`, `install_tree` and `arches` (comma-separated), `format` and `repo` (comma-separated lists), `can_fail`,
and every other option by its dest name (`distro`, `kickstart`, `ksurl`, `ksversion`, `disk_size`, `release`,
...). koji reads it with ConfigParser, so '%' is written as '%%'. `scratch` is left to the command line
(`--scratch`): in the file it would be the string "False", which is true.

The kickstart koji builds differs from the local one in two ways, both from the build system's contract:
koji/ImageFactory want `reboot` as the final command (a local libvirt build wants poweroff), and koji supplies
the install tree (`install_tree`) and the repos (`repo`, else the build tag's repo) itself, so the url and repo
lines are left out, as in the official CentOS kickstarts. A repo that has only a mirrorlist/metalink cannot be
given to koji's `repo` option (base URLs only): it is reported in `ImageBuildConfig.notes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ccis_workbench import __version__
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.model import expand_arch
from ccis_workbench.core.propose import check_tag, default_tag, kickstart_name, release_major, sha256_text

#: Workbench output format -> koji image-build format name (the client's list in handle_image_build:
#: vmdk qcow qcow2 vdi vpc rhevm-ova vsphere-ova vagrant-* docker raw-xz liveimg-squashfs tar-gz).
KOJI_FORMATS: dict[str, str] = {
    "qcow2": "qcow2",
    "raw": "raw-xz",  # koji ships raw images xz-compressed
    "vmdk": "vmdk",
    "vhd": "vpc",  # qemu's and koji's name for VHD
    "ova": "vsphere-ova",  # rhevm-ova for the oVirt target, see koji_format()
    "gce-tar": "tar-gz",  # disk.raw in a gzip tar, as Google Compute Engine imports it
    "vagrant-libvirt": "vagrant-libvirt",
    "rootfs-tar": "docker",  # ImageFactory's docker plugin: the root file system as a container image
}
#: Every format name the koji client documents for image-build (checked by tests against koji itself).
KOJI_KNOWN_FORMATS = ("vmdk", "qcow", "qcow2", "vdi", "vpc", "rhevm-ova", "vsphere-ova", "vagrant-virtualbox",
                      "vagrant-libvirt", "vagrant-vmware-fusion", "vagrant-hyperv", "docker", "raw-xz",
                      "liveimg-squashfs", "tar-gz")
SECTION = "image-build"
#: Keys the koji client reads as positional arguments (not options).
POSITIONAL_KEYS = ("name", "version", "target", "install_tree", "arches")


def koji_format(fmt: str, target: str) -> str:
    """The koji image-build format name for a workbench format of *target*."""
    if fmt == "ova" and target == "ovirt":
        return "rhevm-ova"
    try:
        return KOJI_FORMATS[fmt]
    except KeyError:
        raise WorkbenchError("Unknown format", f"no koji image-build format for {fmt!r}",
                             hint=f"known formats: {', '.join(KOJI_FORMATS)}") from None


def stream_dist(release_name: str) -> str:
    """CBS's dist spelling: centos-stream-9 -> '9s', centos-7 -> '7'."""
    major = release_major(release_name)
    return f"{major}s" if "stream" in release_name else str(major)


def default_koji_target(release_name: str) -> str:
    """A build target following CBS's naming (SIG + dist, project, release, el + dist); CBS assigns the real one.

    e.g. cloudinstance9s-images-main-el9s. Pass --koji-target with the target the SIG was given.
    """
    dist = stream_dist(release_name)
    return f"cloudinstance{dist}-images-main-el{dist}"


def default_distro(release_name: str) -> str:
    """koji's --distro in the client's documented form "CentOS-X.Y": CentOS-7.9, CentOS-9.0 (not checked against
    a CBS builder; --distro overrides it)."""
    major = release_major(release_name)
    return "CentOS-7.9" if major == 7 else f"CentOS-{major}.0"


def koji_name(release_name: str, target: str) -> str:
    """The image's koji package name, as the official images are named (CentOS-Stream-GenericCloud-9-...):
    family plus target, the major version goes into `version`."""
    family = "CentOS-Stream" if "stream" in release_name else "CentOS"
    return f"{family}-{target}"


def koji_kickstart(comp: Any) -> str:
    """The flattened kickstart for koji: final command `reboot`, no url/repo lines (koji supplies them).

    Made by pykickstart from the composition's own text, so everything else is byte-for-byte its canonical form.
    """
    from pykickstart.constants import KS_REBOOT

    from ccis_workbench.core.ksparse import parse_text

    handler, _ = parse_text(comp.text, comp.version, fatal=True)
    handler.reboot.action = KS_REBOOT
    handler.reboot.seen = True
    handler.url.seen = False
    handler.repo.repoList = []
    body = str(handler)
    first, _, rest = body.partition("\n")
    if first.startswith("# Generated by pykickstart"):
        body = rest
    overlays = ", ".join(o.name for o in comp.overlays) or "none"
    head = [f"# Generated by ccis-workbench {__version__} for koji image-build: profile {comp.profile.name}",
            f"# release {comp.release.name}, target {comp.target.name}, overlays: {overlays}",
            f"# made from the local kickstart sha256 {sha256_text(comp.text)}",
            "# for koji: the final command is reboot; the install tree and repos come from the image-build config"]
    return "\n".join(head) + "\n" + body


@dataclass
class ImageBuildConfig:
    """The [image-build] section, field names as the koji client reads them."""

    name: str
    version: str
    target: str
    install_tree: str
    arches: list[str]
    formats: list[str]
    distro: str
    ksversion: str
    disk_size: int
    kickstart: str
    release: str | None = None
    ksurl: str | None = None
    repos: list[str] = field(default_factory=list)
    can_fail: list[str] = field(default_factory=list)
    factory_parameters: dict[str, str] = field(default_factory=dict)
    ova_options: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the config cannot carry; written as comments

    def options(self) -> list[tuple[str, str]]:
        """(key, value) pairs of the [image-build] section, in the order they are written."""
        pairs = [("name", self.name), ("version", self.version), ("release", self.release),
                 ("target", self.target), ("install_tree", self.install_tree), ("arches", ",".join(self.arches)),
                 ("format", ",".join(self.formats)), ("distro", self.distro), ("ksversion", self.ksversion),
                 ("disk_size", str(self.disk_size)), ("ksurl", self.ksurl), ("kickstart", self.kickstart),
                 ("repo", ",".join(self.repos) if self.repos else None),
                 ("can_fail", ",".join(self.can_fail) if self.can_fail else None)]
        return [(k, v) for k, v in pairs if v is not None]

    def validate(self) -> None:
        """Refuse values koji would misread: empty, multi-line, or a comma inside a list item."""
        for key, value in self.options():
            if not value.strip():
                raise WorkbenchError("Bad koji value", f"{key} is empty")
            if "\n" in value or "\r" in value:
                raise WorkbenchError("Bad koji value", f"{key} contains a line break: {value!r}")
        for key, items in (("repo", self.repos), ("arches", self.arches), ("format", self.formats)):
            for item in items:
                if "," in item:
                    raise WorkbenchError("Bad koji value", f"{key} item {item!r} contains a comma; koji splits "
                                                           f"{key} at commas")
        for key in ("version", "release"):
            value = getattr(self, key)
            if value is not None and "-" in value:
                raise WorkbenchError("Bad koji value", f"{key} {value!r} contains '-' (koji's NVR separator)")
        unknown = [f for f in self.formats if f not in KOJI_KNOWN_FORMATS and f != "raw"]
        if unknown:
            raise WorkbenchError("Bad koji value", f"unknown koji format(s): {', '.join(unknown)}")

    def to_ini(self, comment: str = "") -> str:
        """The config file text (ConfigParser syntax: '%' doubled)."""
        self.validate()
        out = [f"# {line}" if line else "#" for line in comment.splitlines()] if comment else []
        out += [f"# NOTE: {note}" for note in self.notes]
        out.append(f"[{SECTION}]")
        out += [f"{k} = {_escape(v)}" for k, v in self.options()]
        for section, values in (("factory-parameters", self.factory_parameters), ("ova-options", self.ova_options)):
            if values:
                out += ["", f"[{section}]"] + [f"{k} = {_escape(v)}" for k, v in values.items()]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The section as a dict (values as written), plus the extra sections when set."""
        d: dict[str, Any] = dict(self.options())
        if self.factory_parameters:
            d["factory-parameters"] = dict(self.factory_parameters)
        if self.ova_options:
            d["ova-options"] = dict(self.ova_options)
        return d


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def command(config_path: str, *, scratch: bool = True, koji: str = "koji") -> list[str]:
    """The exact command line (an argument list) that submits the config."""
    return [koji, "image-build", "--config", config_path] + (["--scratch"] if scratch else [])


_NAME_RX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def image_build_config(comp: Any, *, kickstart: str, tag: str | None = None, koji_target: str | None = None,
                       ksurl: str | None = None, name: str | None = None, release: str | None = None,
                       distro: str | None = None, arches: list[str] | None = None) -> ImageBuildConfig:
    """The image-build config for a composition.

    *kickstart*: the path the koji client uploads (or, with *ksurl*, the file's path inside that SCM URL).
    Default NVR: name CentOS-Stream-<target>, version the major release, release the tag (date YYYYMMDD).
    """
    if comp.target is None:
        raise WorkbenchError("No target", "a koji image needs a target; the baseline alone is not an image")
    tag = check_tag(tag or default_tag())
    arch = str(comp.variables.get("arch", "x86_64"))
    arches = arches or [arch]
    nm = name or koji_name(comp.release.name, comp.target.name)
    if not _NAME_RX.fullmatch(nm):
        raise WorkbenchError("Bad koji value", f"name {nm!r}: letters, digits and . _ + - only")
    formats: list[str] = []
    for fmt in comp.target.formats:
        kf = koji_format(fmt, comp.target.name)
        if kf not in formats:
            formats.append(kf)
    repos, notes = repo_urls(comp)
    disk = int(comp.variables.get("disk_size", 10))
    return ImageBuildConfig(name=nm, version=str(release_major(comp.release.name)),
                            release=check_tag(release) if release else tag,
                            target=koji_target or default_koji_target(comp.release.name),
                            install_tree=comp.release.tree_url(arch), arches=arches, formats=formats,
                            distro=distro or default_distro(comp.release.name), ksversion=comp.version,
                            disk_size=disk, kickstart=kickstart, ksurl=ksurl, repos=repos, notes=notes)


def repo_urls(comp: Any) -> tuple[list[str], list[str]]:
    """Every repo of the merged kickstart as a koji `repo` URL (koji replaces the kickstart's repo lines with
    these), plus a note for each repo koji cannot take (mirrorlist/metalink only: koji wants a baseurl)."""
    urls: list[str] = []
    notes: list[str] = []
    handler = getattr(comp, "handler", None)
    repo_list = list(handler.repo.repoList) if handler is not None else []
    if handler is None:
        arch = str(comp.variables.get("arch", "x86_64"))
        urls = [expand_arch(r.url, arch) for r in comp.release.repos]
    for r in repo_list:
        url = (getattr(r, "baseurl", None) or "").strip("\"'")
        if url:
            if url not in urls:
                urls.append(url)
        else:
            kind = "metalink" if getattr(r, "metalink", None) else "mirrorlist"
            notes.append(f"repo {r.name} has only a {kind}; koji's repo option takes base URLs, so give a "
                         f"baseurl for it in the overlay or add it to the build tag")
    return urls, notes


def koji_files(comp: Any, *, tag: str | None = None) -> tuple[str, str]:
    """(kickstart file name, config file name) for a composition: the SIG's naming, .ks and .koji.ini."""
    tag = check_tag(tag or default_tag())
    arch = str(comp.variables.get("arch", "x86_64"))
    ks = kickstart_name(comp.release.name, arch, comp.target.name, tag)
    return ks, ks[:-3] + ".koji.ini"
