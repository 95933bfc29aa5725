"""The build hand-offs, written once for both faces: build request -> plan -> build -> artifact directory.

`plan_build` composes nothing itself: it takes the composition the face already has (the CLI composes the
profile from its arguments, the TUI its current choice) and the request, resolves the install source (building
the rehearsal tree when asked) and returns the BuildPlan that `ccis-workbench plan` prints and the build screen
shows. `run_build` hands the plan to the libvirt backend, imported only then.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.flows.settings import Settings

#: The tree kinds a request can name: a URL, a local tree directory, an ISO file, or the rehearsal tree.
REHEARSAL = "rehearsal"


@dataclass
class BuildRequest:
    """Everything a build needs beyond the composition. Defaults come from `Settings` (one place)."""

    tree: str | None = None  # URL | DIR | ISO | "rehearsal"; None: the release's tree URL
    uri: str = "qemu:///system"
    accel: str = "auto"
    pool: str = "ccis-workbench"
    network: str = "user"
    memory_mb: int = 2048
    vcpus: int = 2
    disk_size: str | None = None  # e.g. 256M or 10G; None: the profile's disk_size
    formats: list[str] | None = None  # None: the target's formats
    output: str = "artifacts"
    kernel_args: list[str] = field(default_factory=list)
    inactivity_timeout: float = 300.0
    total_timeout: float = 3600.0
    build_id: str | None = None
    rehearsal_cache: str | None = None  # where the rehearsal tree is built (None: the user's cache)
    sign_key: str = ""  # OpenPGP key that signs CHECKSUM; empty: unsigned (every report says so)
    catalog_root: str | None = None  # the catalog composed from (its git commit goes into the attestation)

    @classmethod
    def from_settings(cls, settings: Settings, **given: Any) -> BuildRequest:
        """A request whose unset fields come from *settings* (command line > environment > config > default)."""
        values = {"uri": settings.uri, "accel": settings.accel, "pool": settings.pool, "network": settings.network,
                  "memory_mb": settings.memory_mb, "vcpus": settings.vcpus, "output": settings.artifacts,
                  "inactivity_timeout": settings.inactivity_timeout, "total_timeout": settings.total_timeout,
                  "sign_key": settings.sign_key}
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


def resolve_source(comp: Any, request: BuildRequest, monitor: Monitor, *, download: bool) -> Any:
    """The install source for *comp*: the rehearsal tree (built from the host's packages), the given URL, local
    tree or ISO, or the release's own tree URL. Without *download*, a URL tree is only described (plan)."""
    from ccis_workbench.core import installsource

    arch = str(comp.variables.get("arch", "x86_64"))
    spec = (request.tree or "").strip() or comp.release.tree_url(arch)
    if spec == REHEARSAL:
        from ccis_workbench.rehearsal.tree import build_tree

        cache = Path(request.rehearsal_cache) if request.rehearsal_cache else None
        spec = str(build_tree(cache=cache, monitor=monitor))
    return installsource.resolve_for_plan(spec, arch, monitor, download=download,
                                          instead="the rehearsal tree: --tree rehearsal")


def kvm_device_usable() -> bool:
    """Whether /dev/kvm can be opened (auto may still fall back to TCG when KVM guests do not run)."""
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def known_kvm_works(uri: str) -> bool | None:
    """What an earlier run (or `doctor`) recorded about KVM guests on *uri*'s host: True, False, or None when
    nothing is known or libvirt cannot be asked (the plan is then shown without it)."""
    try:
        verdict = libvirt_backend("ccis_workbench.backends.libvirt_build").kvm_verdict(uri)
    except Exception:  # noqa: BLE001 - no libvirt-python, no daemon, a remote host away: nothing is known
        return None
    return None if verdict is None else bool(verdict.kvm_works)


def describe_accel(accel: str, kvm_works: bool | None = None) -> str:
    """What a build with *accel* would really use here, in a few words (the TUI's status line)."""
    if accel in ("kvm", "tcg"):
        return accel
    if not kvm_device_usable():
        return "auto: tcg (no usable /dev/kvm)"
    if kvm_works is False:
        return "auto: tcg (KVM guests do not run here)"
    if kvm_works:
        return "auto: kvm"
    return "auto: kvm, tcg if KVM guests stay silent"


def plan_build(comp: Any, request: BuildRequest, monitor: Monitor | None = None, *, download: bool = False,
               name: str | None = None) -> Any:
    """Composition + request -> BuildPlan (blocking: may build the rehearsal tree or read a URL's .treeinfo).

    *name* is what the plan calls the profile (default: the composition's profile name)."""
    from ccis_workbench.core.plan import PlanOptions, make_plan, parse_size_mb

    mon = monitor or Monitor()
    disk = (request.disk_size or "").strip()
    kernel_args = list(request.kernel_args)
    opts = PlanOptions(uri=request.uri, accel=request.accel, memory_mb=request.memory_mb, vcpus=request.vcpus,
                       disk_size_mb=parse_size_mb(disk) if disk else None, network=request.network,
                       pool=request.pool, extra_kernel_args=kernel_args, formats=request.formats,
                       output_dir=request.output, inactivity_timeout=request.inactivity_timeout,
                       total_timeout=request.total_timeout, build_id=request.build_id)
    opts.validate()  # a bad option is refused before the install tree is read, built or downloaded
    source = resolve_source(comp, request, mon, download=download)
    if source.is_rehearsal and not any(a.startswith(EPOCH_ARG + "=") for a in kernel_args):
        kernel_args.append(f"{EPOCH_ARG}={source_date_epoch(request.catalog_root)}")
    kvm = kvm_device_usable()
    kvm_works = known_kvm_works(request.uri) if kvm and request.accel == "auto" else None
    plan = make_plan(comp, name or comp.profile.name, source, opts, kvm_available=kvm, kvm_works=kvm_works,
                     arch=str(comp.variables.get("arch", "x86_64")))
    plan.notes.extend(source.notes)
    plan.sign_key = request.sign_key or None
    plan.catalog = catalog_state(Path(request.catalog_root)) if request.catalog_root else {}
    prof = comp.profile
    plan.choice = {"release": prof.release, "target": prof.target, "overlays": list(prof.overlays),
                   "variables": {k: v for k, v in prof.variables.items()}}
    return plan


#: The rehearsal installer's kernel argument: every time the image records (rehearsal/files/installer.sh).
EPOCH_ARG = "rehearsal.source_date_epoch"


def source_date_epoch(catalog_root: str | None) -> int:
    """SOURCE_DATE_EPOCH for a reproducible rehearsal build: the environment's, else the catalog's git commit time,
    else 0 (a rebuild reads it back from the manifest's kernel command line)."""
    from ccis_workbench import gitops

    given = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if given.isdigit():
        return int(given)
    if catalog_root:
        try:
            repo = gitops.toplevel(Path(catalog_root))
            return int(gitops.run_git(repo, ["log", "-1", "--format=%ct", "HEAD"]).stdout.decode().strip() or 0)
        except (WorkbenchError, ValueError):
            pass
    return 0


def catalog_state(root: Path) -> dict[str, Any]:
    """{"path", "commit", "dirty"} of the catalog at *root* (commit None outside a git repository)."""
    from ccis_workbench import gitops

    state: dict[str, Any] = {"path": str(root.resolve()), "commit": None, "dirty": None}
    try:
        repo = gitops.toplevel(root)
        state["commit"] = gitops.resolve_commit(repo, "HEAD")
        state["dirty"] = bool(gitops.status(repo))
    except WorkbenchError:
        pass
    return state


def plan_for_run(plan: Any, comp: Any, request: BuildRequest, monitor: Monitor) -> Any:
    """The plan a build runs: a plan computed without downloading (the plan view) is computed again with the
    kernel and initrd fetched into the cache, keeping its build id."""
    if plan.source.kind == "url" and not plan.source.downloaded:
        again = BuildRequest(**{**request.__dict__, "build_id": plan.build_id})
        return plan_build(comp, again, monitor, download=True, name=plan.profile)
    return plan


#: What runs a plan: the libvirt backend by default; the TUI's tests inject another.
BuildRunner = Callable[[Any, Monitor], Path]


def run_build(plan: Any, monitor: Monitor) -> Path:
    """Build *plan* on libvirt with the live console; the artifact directory, or BuildFailed (a WorkbenchError
    whose `result` says how it ended: failed, stalled, timeout, cancelled, crashed, lost)."""
    backend = libvirt_backend("ccis_workbench.backends.libvirt_build")
    return backend.Build(plan, monitor).run()


def leftovers_of(uri: str, pool: str, run_id: str) -> list[str]:
    """Names of ccis- domains and volumes of run *run_id* still present on *uri* (after a cancel)."""
    import contextlib

    backend = libvirt_backend("ccis_workbench.backends.libvirt_build")
    conn = backend.connect(uri)
    try:
        return [i.name for i in backend.find_leftovers(conn, pool) if run_id in i.name]
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def libvirt_backend(module: str) -> Any:
    """Import a libvirt backend module; a missing libvirt-python becomes a clear error, not a traceback."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "libvirt":
            raise WorkbenchError("libvirt-python is not installed", "this command talks to libvirt through "
                                 "libvirt-python", hint="pip install 'ccis-workbench[libvirt]' (needs apt: "
                                 "libvirt-dev pkg-config)") from None
        raise
