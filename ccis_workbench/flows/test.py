"""The boot-test hand-offs, written once for both faces: artifact -> manifest -> profile, checks and seed -> run ->
reports.

Which checks apply to an image is decided here and only here: the profile named on the command line (or the TUI's
explicit choice), else the profile the artifact's manifest.json names (a saved profile of this catalog, or the
release/target/overlays/variables the build recorded), else the fallback the face offers (the TUI's current
choice). Whether the image is a rehearsal image is the manifest's typed `rehearsal` field, or the user's explicit
choice; never a text search.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.manifest import Manifest, find_manifest
from ccis_workbench.core.monitor import Monitor

REHEARSAL_NOTE = "REHEARSAL image (not CentOS): only the checks it can answer run"


@dataclass
class TestSetup:
    """What a run needs: the image, its manifest, the profile and checks that apply, the seed and the label."""

    __test__ = False  # not a pytest class

    image: Path
    manifest: Manifest | None
    profile: Any  # core.model.Profile
    comp: Any  # core.compose.Composition (an image without a seed is logged into with its kickstart's user)
    plan: Any  # core.testspec.CheckPlan
    rehearsal: bool
    seed: str
    hostname: str
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.profile.name)


def resolve_artifact(spec: str, catalog: Any, artifacts: Path) -> tuple[Path, Manifest | None]:
    """ARTIFACT (an image file or an artifact directory) or PROFILE (its newest build under *artifacts*)."""
    from ccis_workbench.core.testimage import find_artifact

    spec = spec.strip()
    if not spec:
        raise WorkbenchError("No artifact", "choose a disk image, a build's artifact directory or a profile",
                             hint="build first, or give the path of a .qcow2/.raw image or an artifact directory")
    p = Path(spec)
    if p.is_file():
        return p.resolve(), find_manifest(p.resolve().parent)
    if p.is_dir():
        return find_artifact(p), find_manifest(p)
    if spec in catalog.profile_names():
        build = latest_build(spec, artifacts)
        if build is not None:
            return find_artifact(build), find_manifest(build)
        raise WorkbenchError("No artifact", f"no build of profile {spec} under {artifacts}/",
                             hint=f"build it first: ccis-workbench build {spec}")
    raise WorkbenchError("Not found", f"{spec!r} is neither an image file, an artifact directory nor a profile",
                         file=spec, hint="give a .qcow2/.raw file, a build's artifact directory or a profile name")


def latest_build(profile: str, parent: Path) -> Path | None:
    """The newest build folder of *profile* under *parent* (it holds manifest.json), or None."""
    if not parent.is_dir():
        return None
    builds = sorted((d for d in parent.iterdir() if d.is_dir() and d.name.startswith(f"{profile}-")
                     and (d / "manifest.json").is_file()), key=lambda d: d.stat().st_mtime)
    return builds[-1] if builds else None


def profile_of_manifest(catalog: Any, manifest: Manifest) -> tuple[Any, str] | None:
    """(Profile, why) from what the build recorded, or None when it names nothing this catalog knows."""
    from ccis_workbench.core.compose import choice

    if manifest.profile and manifest.profile in catalog.profile_names():
        return catalog.load_profile(manifest.profile), f"checks of profile {manifest.profile} (named by the " \
                                                       "artifact's manifest.json)"
    ch = manifest.choice
    if isinstance(ch.get("release"), str) and isinstance(ch.get("target"), str):
        overlays = [o for o in ch.get("overlays") or [] if isinstance(o, str)]
        variables = ch.get("variables") if isinstance(ch.get("variables"), dict) else {}
        profile = choice(ch["release"], ch["target"], overlays, variables, name=manifest.profile or None)
        return profile, (f"checks of {profile.name}: the release, target, overlays and variables recorded in the "
                         "artifact's manifest.json")
    return None


def prepare_test(catalog: Any, composer: Any, artifact: str, *, profile: Any = None, fallback: Any = None,
                 rehearsal: bool | None = None, seed: str = "auto", only: list[str] | None = None,
                 skip: list[str] | None = None, artifacts: Path = Path("artifacts")) -> TestSetup:
    """Resolve *artifact* and everything a run of it needs (blocking: composes the profile).

    *profile*: the profile the user named (wins). *fallback*: used when neither the user nor the manifest names
    one (the TUI's current choice); without it such an artifact is an error that says what to give.
    *rehearsal*: True or False forces; None takes the manifest's typed field."""
    from ccis_workbench.core.testimage import artifact_kind, check_disk_header, seed_for
    from ccis_workbench.core.testspec import filter_plan, load_spec, select_checks

    image, manifest = resolve_artifact(artifact, catalog, artifacts)
    if artifact_kind(image) == "disk":
        check_disk_header(image)
    notes: list[str] = []
    if profile is None and not Path(artifact).exists() and artifact.strip() in catalog.profile_names():
        profile = catalog.load_profile(artifact.strip())
    if profile is None and manifest is not None:
        found = profile_of_manifest(catalog, manifest)
        if found is not None:
            profile, why = found
            notes.append(why)
    if profile is None:
        if fallback is None:
            raise WorkbenchError("Which checks?", "cannot tell which profile this image was built from",
                                 file=str(image), hint="give --profile NAME (or --release and --target)")
        profile = fallback
        notes.append(f"checks of the current choice {profile.name} (the artifact names no profile of this catalog)")
    comp = composer.compose(profile)
    if manifest is not None and not kickstart_matches(comp.text, manifest.kickstart_sha256):
        notes.append(f"this catalog ({catalog.root}) composes {profile.name} to another kickstart than the one the "
                     "image was built from (kickstart_sha256 in manifest.json): the derived checks follow this "
                     "catalog; give --catalog of the build for checks that match the image")
    if rehearsal is None:
        rehearsal = bool(manifest is not None and manifest.rehearsal)
    if rehearsal:
        notes.append(REHEARSAL_NOTE)
    plan = filter_plan(select_checks(load_spec(catalog.root), comp, rehearsal=rehearsal), only or [], skip or [])
    if plan.context == "container":
        notes.append("container image: checked in podman or a chroot, nothing boots")
    return TestSetup(image, manifest, profile, comp, plan, rehearsal, seed_for(plan, seed, rehearsal),
                     hostname_for(profile.name), notes)


def kickstart_matches(text: str, sha256: str) -> bool:
    """Whether the composed *text* is the kickstart a build recorded as *sha256* (with or without the rootfs-tar
    export %post); True when the build recorded none."""
    import hashlib

    from ccis_workbench.core.plan import build_kickstart

    if not sha256:
        return True
    return any(hashlib.sha256(build_kickstart(text, formats).encode()).hexdigest() == sha256
               for formats in ([], ["rootfs-tar"]))


def hostname_for(profile_name: str) -> str:
    """The guest's host name: ccis-test-NAME (letters, digits and dashes, 40 at most)."""
    name = "".join(ch if ch.isalnum() else "-" for ch in profile_name.lower()).strip("-")[:40]
    return f"ccis-test-{name}" if name else "ccis-test"


@dataclass
class BootRequest:
    """The guest settings of a boot test (defaults from `Settings`, one place)."""

    uri: str = "qemu:///system"
    accel: str = "auto"
    pool: str = "ccis-workbench"
    memory_mb: int = 1024
    grow_mib: int = 1024
    login_timeout: float = 600.0
    inactivity_timeout: float = 300.0
    keep_on_failure: bool = False
    container_runner: str = "auto"
    workdir: str | None = None
    run_id: str | None = None  # None: a new one
    keyring: str | None = None  # the keyring the image's signed CHECKSUM is verified against (report note)
    #: auto (what the target claims for the release) | bios | uefi | both (OVMF found on this host; for a remote
    #: URI, give firmware_path)
    firmware: str = "auto"
    firmware_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, **given: Any) -> BootRequest:
        values = {"uri": settings.uri, "accel": settings.accel, "pool": settings.pool,
                  "memory_mb": settings.test_memory_mb,
                  "grow_mib": settings.grow_mib, "login_timeout": settings.login_timeout,
                  "inactivity_timeout": settings.inactivity_timeout}
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


#: `boot-test --firmware`: auto is what the target claims for the release (its `firmware:` in the catalog)
FIRMWARE_CHOICES = ("auto", "bios", "uefi", "both")


def firmwares_for(setup: TestSetup, request: BootRequest) -> tuple[list[str], str]:
    """The firmwares to boot with, in order, and why: the request's, or (auto) the target's claim."""
    fw = request.firmware
    if fw == "both":
        return ["bios", "uefi"], "--firmware both"
    if fw in ("bios", "uefi"):
        return [fw], f"--firmware {fw}"
    if fw != "auto":
        raise WorkbenchError("Unknown firmware", repr(fw), hint=f"choose {', '.join(FIRMWARE_CHOICES)}")
    target = setup.comp.target
    if target is None:
        return ["bios"], "no target: BIOS"
    release = setup.comp.release.name
    claim = target.firmwares(release)
    return claim, f"what target {target.name} claims on {release}"


def is_container(setup: TestSetup) -> bool:
    """Whether *setup*'s image is a container rootfs (checked without booting, so without firmware)."""
    from ccis_workbench.backends.artifact_test import check_kind

    return check_kind(setup.image, setup.plan, setup.label) == "rootfs"


def boot_options(setup: TestSetup, request: BootRequest) -> Any:
    """The backend's BootTestOptions for *setup* (None for a container image: nothing boots) with the request's
    one firmware (bios or uefi; auto: the first the target claims). Imports the libvirt backend only for disks."""
    if is_container(setup):
        return None
    if request.firmware not in ("bios", "uefi"):
        request = dataclasses.replace(request, firmware=firmwares_for(setup, request)[0][0])
    from ccis_workbench.core.boottest_plan import find_ovmf
    from ccis_workbench.flows.build import libvirt_backend

    boottest = libvirt_backend("ccis_workbench.backends.boottest")
    return boottest.BootTestOptions(
        uri=request.uri, accel=request.accel, pool=request.pool, memory_mb=request.memory_mb, grow_mib=request.grow_mib,
        login_timeout=request.login_timeout, inactivity_timeout=request.inactivity_timeout,
        keep_on_failure=request.keep_on_failure, seed=setup.seed, hostname=setup.hostname,
        rehearsal=setup.rehearsal, run_id=request.run_id, firmware=request.firmware,
        firmware_path=request.firmware_path if request.firmware_path is not None else
        (find_ovmf() if request.firmware == "uefi" else ""))


def plan_test(setup: TestSetup, request: BootRequest) -> Any:
    """What the boot test would do (core.boottest_plan.BootTestPlan: domain XML, volumes, seed, checks), without
    booting, with the request's first firmware (plan_tests: one per firmware); None for a container image."""
    from ccis_workbench.core.boottest_plan import plan_boot_test
    from ccis_workbench.flows.build import known_kvm_works, kvm_device_usable

    options = boot_options(setup, request)
    if options is None:
        return None
    kvm = kvm_device_usable()
    return plan_boot_test(setup.image, setup.plan, options, label=setup.label, kvm_available=kvm,
                          kvm_works=known_kvm_works(request.uri) if kvm and request.accel == "auto" else None)


def plan_tests(setup: TestSetup, request: BootRequest) -> list[Any]:
    """One plan per firmware the test boots with ([None] for a container image)."""
    if is_container(setup):
        return [None]
    return [plan_test(setup, dataclasses.replace(request, firmware=fw)) for fw in firmwares_for(setup, request)[0]]


def run_test(setup: TestSetup, request: BootRequest, monitor: Monitor,
             on_result: Callable[[Any], None] | None = None) -> Any:
    """Boot a disk with each firmware the request names (auto: the target's claim), one after the other, each in
    its own domain, or check a container image; one BootTestResult. With several firmwares it has one section
    per firmware, passes only if every boot passed, and its ending names the firmware that failed.

    *on_result* receives the result once, as soon as it is final: for a disk, when the last boot's checks are
    done and before its guest is destroyed (destroying a TCG guest takes a second or two), so a face reports at
    once; the result returned afterwards is the same verdict with the cleanup's timings added. The image's
    verification (`verify` of its build folder) runs beside the boot, not after it."""
    verification = _Verification(setup.image, request.keyring)
    delivered: list[Any] = []

    def final(result: Any) -> Any:
        if not is_cancelled(result) and hasattr(result, "notes"):
            note = verification.note()
            if note:
                result = result.snapshot(notes=[*result.notes, note])
        return result

    def deliver(result: Any) -> None:
        if on_result is not None and not delivered:
            delivered.append(result)
            on_result(result)

    if is_container(setup):
        result = final(_run_one(setup, request, monitor))
        deliver(result)
        return result
    from ccis_workbench.flows.leftovers import remove_dead_runs

    for line in remove_dead_runs(request.uri, request.pool):  # what killed runs left in the pool goes first
        monitor.note("warning", line)
    firmwares, why = firmwares_for(setup, request)
    runs: list[tuple[str, Any]] = []

    def outcome(last: tuple[str, Any]) -> Any:
        every = [*runs, last]
        if len(every) == 1:
            fw, r = last
            return final(r.snapshot(firmware=fw, notes=[f"firmware {firmwares[0]} ({why})", *r.notes]))
        return final(combine_firmware_runs(every, why))

    for fw in firmwares[:-1]:
        if runs:
            monitor.note("info", f"boot test with firmware {fw} ({why})")
        result = _run_one(setup, dataclasses.replace(request, firmware=fw), monitor)
        if is_cancelled(result):
            result = outcome((fw, result))
            deliver(result)
            return result
        result.firmware = fw
        runs.append((fw, result))
    last = firmwares[-1]
    if runs:
        monitor.note("info", f"boot test with firmware {last} ({why})")

    def early(r: Any) -> None:
        deliver(outcome((last, r)))

    result = outcome((last, _run_one(setup, dataclasses.replace(request, firmware=last), monitor,
                                     early if on_result is not None else None)))
    deliver(result)
    return result


class _Verification:
    """`verify` of the image's build folder (the note the report carries), run in a thread beside the boot: it
    hashes every artifact of the folder, which on a 10 GiB sparse disk takes seconds the user would otherwise
    wait for after the verdict."""

    def __init__(self, image: Path, keyring: str | None) -> None:
        import threading

        self._note = ""
        self._thread = threading.Thread(target=self._run, args=(image, keyring), name="verify-image", daemon=True)
        self._thread.start()

    def _run(self, image: Path, keyring: str | None) -> None:
        try:
            self._note = verification_note(image, keyring)
        except Exception as exc:  # noqa: BLE001 - a note, never the reason a boot test fails
            self._note = f"image verification: could not run: {type(exc).__name__}: {exc}"

    def note(self) -> str:
        from ccis_workbench.flows.signals import join

        join(self._thread)  # a signal reaches its handler while a big image is hashed (flows/signals.py)
        return self._note


def combine_firmware_runs(runs: list[tuple[str, Any]], why: str = "") -> Any:
    """One BootTestResult of the runs of one image with several firmwares: every run's checks (each with its
    firmware), one section per firmware, times added up, the ending of the first that did not complete, a message
    naming every firmware that failed."""

    def total(attr: str) -> float | None:
        values = [getattr(r, attr) for _, r in runs]
        return None if any(v is None for v in values) else sum(values)

    first = runs[0][1]
    failed = [(fw, r) for fw, r in runs if not r.passed]
    cancelled = next((r for _, r in runs if is_cancelled(r)), None)
    if cancelled is not None:
        ending, message = "cancelled", cancelled.ending_message
    elif not failed:
        ending, message = "completed", f"every check ran with each firmware ({', '.join(fw for fw, _ in runs)})"
    else:
        ending = next((r.ending for _, r in failed if r.ending != "completed"), "completed")
        message = f"FAILED with {' and '.join(fw for fw, _ in failed)}: " + "; ".join(
            f"{fw}: {r.ending_message if r.ending != 'completed' else 'a check failed'}" for fw, r in failed)
    notes: list[str] = [f"firmware {' + '.join(fw for fw, _ in runs)} ({why}): one boot each, in its own domain"]
    for _, r in runs:
        notes += [n for n in r.notes if n not in notes]
    sections = [{"firmware": fw, "passed": r.passed, "ending": r.ending, "ending_message": r.ending_message,
                 "counts": r.counts(), "domain": r.domain, "boot_to_login": r.boot_to_login,
                 "total_time": r.total_time, "run_id": r.run_id} for fw, r in runs]
    return dataclasses.replace(
        first, domain=", ".join(r.domain for _, r in runs if r.domain), ending=ending, ending_message=message,
        boot_to_login=total("boot_to_login"), login_time=total("login_time"), checks_time=total("checks_time"),
        total_time=sum(r.total_time for _, r in runs),
        timings={fw: r.timings for fw, r in runs},
        checks=[dataclasses.replace(c, firmware=fw) for fw, r in runs for c in r.checks],
        console_log="".join(f"===== firmware {fw} =====\n{r.console_log}\n" for fw, r in runs),
        kept_domain=next((r.kept_domain for _, r in runs if r.kept_domain), None),
        kept_credentials=next((r.kept_credentials for _, r in runs if r.kept_credentials), None),
        notes=notes, firmware="+".join(fw for fw, _ in runs), sections=sections)


def _run_one(setup: TestSetup, request: BootRequest, monitor: Monitor,
             on_result: Callable[[Any], None] | None = None) -> Any:
    from ccis_workbench.backends.artifact_test import run_artifact_test
    from ccis_workbench.backends.container_test import ContainerTestOptions

    def labelled(result: Any) -> Any:
        if setup.rehearsal and hasattr(result, "rehearsal"):
            result.rehearsal = True  # container checks carry no flag of their own: the label must never be lost
        return result

    early = (lambda result: on_result(labelled(result))) if on_result is not None else None
    result = run_artifact_test(setup.image, setup.comp, setup.plan, monitor, label=setup.label,
                               boot=boot_options(setup, request),
                               container=ContainerTestOptions(runner=request.container_runner,
                                                              workdir=request.workdir),
                               workdir=request.workdir, on_result=early)
    return labelled(result)


def verification_note(image: Path, keyring: str | None = None) -> str:
    """What `verify` says of the build folder holding *image*, as one line for the boot-test report (and so for
    the evidence propose commits): "image verification: VERIFIED (signed): ..." or "NOT VERIFIED ...: the first
    failed checks". Empty when the image is not in a build's folder (no CHECKSUM beside it)."""
    from ccis_workbench.flows.verify import CHECKSUM, verify_folder

    folder = image.parent
    if not (folder / CHECKSUM).is_file():
        return ""
    try:
        report = verify_folder(folder, keyring=keyring)
    except WorkbenchError as exc:
        return f"image verification: could not run: {exc.message}"
    failed = [f"{f.check}: {f.detail}" for f in report.findings if not f.ok]
    state = f"image verification: {report.summary()}"
    return state + (f"; {'; '.join(failed[:3])}" if failed else f"; {len(report.findings)} checks passed")


def is_cancelled(result: Any) -> bool:
    """A cancelled run is not evidence: its report is not written beside the artifact."""
    return getattr(result, "ending", "") == "cancelled"


def report_dir(image: Path, run_id: str, output: str | None = None) -> Path:
    """Where the reports go: *output*, else beside the artifact (when it has a manifest and is writable), else
    ./boot-test-ID."""
    if output:
        return Path(output)
    parent = image.parent
    if (parent / "manifest.json").exists() and os.access(parent, os.W_OK):
        return parent / f"boot-test-{run_id}"
    return Path.cwd() / f"boot-test-{run_id}"
