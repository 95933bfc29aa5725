"""The console/installer-log classifier, fed lines directly: no sockets, no sleeps (like lorax's monitor)."""

from __future__ import annotations

import pytest

from ccis_workbench.core.failure import FailureDetector, classify_line, clean

REHEARSAL_POST_FAILURE = """Running post-installation scripts

An error occurred during the installation (rehearsal installer).
Traceback (most recent call last):
  File "/usr/lib/rehearsal/installer", line 61, in run_scripts
    raise ScriptError(lineno, details)
rehearsal.errors.ScriptError: There was an error running the kickstart script at line 61. This is fatal.

boom
(exit status 1)

Error: %post script failed (kickstart line 61)
"""


@pytest.mark.parametrize(("line", "kind"), [
    ("Traceback (most recent call last):", "traceback"),
    ("Error: %post script failed (kickstart line 3)", "post-failed"),
    ("There was an error running the kickstart script at line 44.  This is a fatal error", "post-failed"),
    ("The following problem occurred on line 12 of the kickstart file:", "kickstart-error"),
    ("Unknown command: frobnicate", "kickstart-error"),
    ("[  181.0] dracut-initqueue[612]: Warning: dracut-initqueue timeout - starting timeout scripts",
     "dracut-emergency"),
    ("Entering emergency mode. Exit the shell to continue.", "dracut-emergency"),
    ("Warning: /dev/root does not exist", "dracut-emergency"),
    ("[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "kernel-panic"),
    ("DEBUG packaging: Missed: kernel-core", "package-error"),
    ("Error in POSTIN scriptlet in rpm package foo", "package-error"),
    ("Not enough disk space to download the packages", "disk-full"),
    ("[ 12.0] Out of memory: Killed process 812 (anaconda)", "oom"),
    ("Installation complete", "success"),
    ("Installation complete. Press ENTER to quit:", "waiting"),
])
def test_classify_line(line: str, kind: str) -> None:
    m = classify_line(line, "console")
    assert m is not None and m.kind == kind


@pytest.mark.parametrize("line", [
    "Installing software", "Running post-installation scripts", "error: nothing here is fatal?",
    "Starting installer, one moment...", "", "   ", "Installation of the bootloader",
])
def test_ordinary_lines_are_not_verdicts(line: str) -> None:
    assert classify_line(line) is None


def test_clean_strips_terminal_escapes() -> None:
    assert clean("\x1bc\x1b[?7l\x1b[2JStarting installer\r") == "Starting installer"
    m = classify_line("\x1b[0;31mKernel panic - not syncing: x\x1b[0m\r")
    assert m is not None and m.kind == "kernel-panic"


def test_rehearsal_post_failure_whole_output_any_chunking() -> None:
    for size in (1, 7, 64, 10_000):
        d = FailureDetector()
        for i in range(0, len(REHEARSAL_POST_FAILURE), size):
            d.feed("console", REHEARSAL_POST_FAILURE[i:i + size])
        v = d.verdict()
        assert v is not None and v.failed
        # the traceback comes first; the specific cause after it decides the kind
        assert v.kind == "post-failed", size
        assert "Traceback (most recent call last):" in v.lines
        assert v.lines[-1] == "Error: %post script failed (kickstart line 61)"
        assert "Running post-installation scripts" in v.lines  # context before the failure


def test_success_then_nothing_failed() -> None:
    d = FailureDetector()
    d.feed("console", "Running post-installation scripts\n\nInstallation complete\nrehearsal: powering off\n")
    v = d.verdict()
    assert v is not None and v.kind == "success" and not v.failed


def test_failure_wins_over_success() -> None:
    d = FailureDetector()
    d.feed("console", "Installation complete\n")
    d.feed("installer-log", "12:00:00,000 ERROR anaconda: Traceback (most recent call last):\n")
    v = d.verdict()
    assert v is not None and v.kind == "traceback" and v.channel == "installer-log"


def test_prompt_without_newline_is_seen() -> None:
    d = FailureDetector()
    d.feed("console", "Installation complete. Press ENTER to quit: ")
    v = d.verdict()
    assert v is not None and v.kind == "waiting" and not v.failed


def test_partial_line_is_not_judged_early() -> None:
    d = FailureDetector()
    d.feed("console", "Kernel pan")
    assert d.verdict() is None
    d.feed("console", "ic - not syncing: Attempted to kill init!\n")
    v = d.verdict()
    assert v is not None and v.kind == "kernel-panic"


def test_channels_do_not_mix_partial_lines() -> None:
    d = FailureDetector()
    d.feed("console", "Tracebac")
    d.feed("installer-log", "k (most recent call last):\n")
    assert d.verdict() is None


def test_package_list_from_installer_log_only() -> None:
    d = FailureDetector()
    d.feed("installer-log", "INFO packaging: Installing kernel-core-5.14.0-1.el9.x86_64 (1/2)\n"
                            "INFO packaging: Installing cloud-init-23.4-1.el9.noarch (2/2)\n")
    d.feed("console", "Installing bogus-1 (1/1)\n")
    assert d.packages == ["kernel-core-5.14.0-1.el9.x86_64", "cloud-init-23.4-1.el9.noarch"]
