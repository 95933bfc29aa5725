"""The boot test reports its result before the guest is destroyed (`on_result`), on real libvirtd + qemu/TCG with
the Debian cloud-init guest (tests/guests/debian_cloud.py, cached): when the result arrives it is complete (the
verdict, the checks, the console log, redacted) and the domain still runs; when `run_boot_test` returns, the
domain and every volume of the run are gone, and a failing callback still leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures_libvirt import left_behind, libvirt_uri  # noqa: F401 (fixture)

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test  # noqa: E402
from ccis_workbench.core.model import Check  # noqa: E402
from ccis_workbench.core.report import BootTestResult  # noqa: E402


@pytest.fixture(scope="module")
def debian_guest() -> Path:
    from tests.guests.debian_cloud import build_or_skip

    return build_or_skip()


def domain_state(uri: str, name: str) -> str:
    proc = subprocess.run(["virsh", "-c", uri, "domstate", name], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "absent"


def options(uri: str) -> BootTestOptions:
    return BootTestOptions(uri=uri, accel="tcg", seed="nocloud", collect_timings=False, login_timeout=600)


def test_result_is_reported_while_the_guest_runs_then_the_guest_is_gone(debian_guest: Path, libvirt_uri: str) -> None:  # noqa: F811
    seen: list[tuple[str, BootTestResult, str, str]] = []

    def on_result(result: BootTestResult) -> None:
        seen.append((domain_state(libvirt_uri, result.domain), result, result.console_log, result.ending))

    checks = [
        Check("early.true", "a check that passes", "true"),
        Check("early.hostname", "prints the hostname", "hostname"),
    ]
    result = run_boot_test(debian_guest, checks, options(libvirt_uri), label="early", on_result=on_result)
    assert len(seen) == 1
    state, reported, console, ending = seen[0]
    assert state == "running", state
    assert ending == "completed" and reported is result and result.passed
    assert {c.id: c.status for c in result.checks} == {"early.true": "passed", "early.hostname": "passed"}
    assert "login:" in console and console == result.console_log
    harness = result.timings["harness"]
    assert 0 < harness["reported"] <= result.total_time and "cleanup-destroy" in harness
    assert left_behind(libvirt_uri, result.domain) == []


def test_a_failing_report_callback_still_leaves_nothing(debian_guest: Path, libvirt_uri: str) -> None:  # noqa: F811
    names: list[str] = []

    def on_result(result: BootTestResult) -> None:
        names.append(result.domain)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run_boot_test(
            debian_guest,
            [Check("early.true", "passes", "true")],
            options(libvirt_uri),
            label="early-fail",
            on_result=on_result,
        )
    assert len(names) == 1 and left_behind(libvirt_uri, names[0]) == []
