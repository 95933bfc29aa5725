"""Every default and every environment variable of the workbench, defined once, for both faces.

A setting's value comes from, in this order: the command line (or the TUI's field), an environment variable, the
configuration file (`$XDG_CONFIG_HOME/ccis-workbench/config.toml`, read with `tomllib`), the default below.
`Settings.source(name)` says which one won; `ccis-workbench config` prints them all.

The catalog in use is found like git finds its repository: `--catalog`; else the first directory at or above the
working directory holding `kickstarts/` and `profiles/`; else `$CCIS_WORKBENCH_ROOT`; else the configuration file's
`catalog`; else the catalog this package was installed with.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError

ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class Setting:
    """One setting: its default, the environment variables that set it (first set wins), how to read a value."""

    name: str
    default: Any
    env: tuple[str, ...]
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("uri", "qemu:///system", ("CCIS_WORKBENCH_URI", "LIBVIRT_DEFAULT_URI"),
            "libvirt URI for builds and boot tests (qemu+ssh://host/system for a remote host)"),
    Setting("accel", "auto", ("CCIS_WORKBENCH_ACCEL",),
            "accelerator: auto (KVM when KVM guests really run here, else TCG), kvm or tcg", choices=ACCELS),
    Setting("pool", "ccis-workbench", ("CCIS_WORKBENCH_POOL",), "libvirt storage pool the workbench owns"),
    Setting("network", "user", ("CCIS_WORKBENCH_NETWORK",), "`user` (user-mode networking) or a libvirt network"),
    Setting("memory_mb", 2048, ("CCIS_WORKBENCH_MEMORY",), "build guest memory in MiB", _positive_int),
    Setting("vcpus", 2, ("CCIS_WORKBENCH_VCPUS",), "build guest vCPUs", _positive_int),
    Setting("test_memory_mb", 1024, ("CCIS_WORKBENCH_TEST_MEMORY",), "boot-test guest memory in MiB",
            _positive_int),
    Setting("artifacts", "artifacts", ("CCIS_WORKBENCH_ARTIFACTS",),
            "artifact parent directory (relative paths are under the working directory)"),
    Setting("inactivity_timeout", 300.0, ("CCIS_WORKBENCH_INACTIVITY_TIMEOUT",),
            "seconds of console silence before a build or boot test gives up", _positive_float),
    Setting("total_timeout", 3600.0, ("CCIS_WORKBENCH_TOTAL_TIMEOUT",), "seconds a build may take in all",
            _positive_float),
    Setting("login_timeout", 600.0, ("CCIS_WORKBENCH_LOGIN_TIMEOUT",),
            "seconds a boot test waits for the login prompt", _positive_float),
    Setting("grow_mib", 1024, ("CCIS_WORKBENCH_GROW",), "MiB the boot-test disk is larger than the image",
            _positive_int),
    Setting("theme", "", ("CCIS_WORKBENCH_THEME",), "TUI theme (empty: ccis-dark; ctrl+t switches to ccis-light)"),
    Setting("sign_key", "", ("CCIS_WORKBENCH_SIGN_KEY",),
            "OpenPGP key (id, fingerprint or user id) gpg signs CHECKSUM with (empty: unsigned)"),
    Setting("hosts", "", ("CCIS_WORKBENCH_HOSTS",),
            "libvirt URIs `matrix` spreads its cells over, comma-separated (empty: the uri setting)"),
)}


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/ccis-workbench/config.toml` (XDG_CONFIG_HOME defaults to ~/.config)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "ccis-workbench" / "config.toml"


def read_config(path: Path) -> dict[str, Any]:
    """The configuration file's table, or {} when there is none; an unknown key or bad TOML names the file."""
    try:
        # a folder this user may not even look into (another user's HOME) holds no configuration for this user
        if not path.is_file():
            return {}
    except OSError:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError("Bad configuration file", str(exc), file=str(path),
                             hint="fix the TOML, or remove the file to use the defaults") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError("Bad configuration file", f"cannot be read: {exc}", file=str(path)) from None
    known = set(SETTINGS) | {"catalog"}
    for key in data:
        if key not in known:
            raise WorkbenchError("Bad configuration file", f"unknown setting {key!r}", file=str(path),
                                 hint=f"known settings: {', '.join(sorted(known))}")
    return data


class Settings:
    """The effective settings. Build it once per command (or per app) with `Settings.load()`."""

    def __init__(self, *, environ: Mapping[str, str] | None = None, config: dict[str, Any] | None = None,
                 config_file: Path | None = None, overrides: Mapping[str, Any] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.config_file = config_file or config_path(self.environ)
        self.config = read_config(self.config_file) if config is None else config
        self._values: dict[str, tuple[Any, str]] = {}
        for name, s in SETTINGS.items():
            self._values[name] = self._resolve(s, (overrides or {}).get(name))

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Settings from the process environment and the user's configuration file, with *overrides* (the
        command line's options; None means "not given") on top."""
        return cls(overrides=overrides)

    def _resolve(self, s: Setting, override: Any) -> tuple[Any, str]:
        if override is not None:
            return self._check(s, override, "command line"), "command line"
        for var in s.env:
            text = self.environ.get(var)
            if text:
                return self._parse(s, text, f"${var}"), f"environment ${var}"
        if s.name in self.config:
            value = self.config[s.name]
            where = f"{self.config_file} ({s.name})"
            return self._parse(s, str(value), where) if not isinstance(value, bool) else \
                self._check(s, value, where), f"config {self.config_file}"
        return s.default, "default"

    def _parse(self, s: Setting, text: str, where: str) -> Any:
        try:
            value = s.parse(text)
        except ValueError as exc:
            raise WorkbenchError("Bad setting", f"{s.name} = {text!r}: {exc}", file=where,
                                 hint=s.help) from None
        return self._check(s, value, where)

    @staticmethod
    def _check(s: Setting, value: Any, where: str) -> Any:
        if s.choices and value not in s.choices:
            raise WorkbenchError("Bad setting", f"{s.name} = {value!r}: choose one of {', '.join(s.choices)}",
                                 file=where, hint=s.help)
        return value

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name][0]
        raise AttributeError(name)

    def get(self, name: str) -> Any:
        return self._values[name][0]

    def source(self, name: str) -> str:
        """Where the value of *name* came from: command line, environment $VAR, config FILE, default."""
        return self._values[name][1]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with *overrides* on top (None values are ignored), reading no file again."""
        merged = {n: v for n, (v, src) in self._values.items() if src == "command line"}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(environ=self.environ, config=self.config, config_file=self.config_file, overrides=merged)

    def rows(self) -> list[tuple[str, Any, str, str]]:
        """(name, value, source, help) for every setting, for `ccis-workbench config`."""
        return [(n, v, src, SETTINGS[n].help) for n, (v, src) in self._values.items()]

    # -- the catalog ------------------------------------------------------------------------------------------

    def catalog_root(self, explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> CatalogRoot:
        """Which catalog is in use, and why (see the module docstring for the order)."""
        if explicit:
            return CatalogRoot(Path(explicit), "--catalog")
        found = find_catalog(cwd or Path.cwd())
        if found is not None:
            return CatalogRoot(found, "working directory")
        env = self.environ.get("CCIS_WORKBENCH_ROOT")
        if env:
            return CatalogRoot(Path(env), "environment $CCIS_WORKBENCH_ROOT")
        if isinstance(self.config.get("catalog"), str):
            return CatalogRoot(Path(self.config["catalog"]).expanduser(), f"config {self.config_file}")
        return CatalogRoot(shipped_catalog(), "shipped with the package")


@dataclass(frozen=True)
class CatalogRoot:
    """A catalog directory and the reason it was chosen."""

    path: Path
    why: str

    def describe(self) -> str:
        return f"{self.path} ({self.why})"


def is_catalog(path: Path) -> bool:
    """A catalog is a directory holding both kickstarts/ and profiles/."""
    return (path / "kickstarts").is_dir() and (path / "profiles").is_dir()


def find_catalog(start: Path) -> Path | None:
    """The first directory at or above *start* that is a catalog (as git finds its repository), or None."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if is_catalog(candidate):
            return candidate
    return None


def shipped_catalog() -> Path:
    """The catalog that came with the package: the source checkout it runs from (or is installed editable from),
    else the copy a wheel installs under `<prefix>/share/ccis-workbench/catalog` (read-only)."""
    checkout = Path(__file__).resolve().parents[2]
    if is_catalog(checkout):
        return checkout
    import sys
    import sysconfig

    for prefix in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix):
        candidate = Path(prefix) / "share" / "ccis-workbench" / "catalog"
        if is_catalog(candidate):
            return candidate
    return checkout


def is_installed_catalog(path: Path) -> bool:
    """Whether *path* is the read-only catalog a wheel installed (saving and proposing need a catalog of one's
    own: `ccis-workbench init DIR`)."""
    return path.resolve().parts[-3:] == ("share", "ccis-workbench", "catalog")
