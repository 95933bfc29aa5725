"""Recognise how an install is going from its console and installer-log lines (the idea of lorax's LogMonitor).

Pure: text in, verdicts out; no sockets, no clocks. The build backend feeds every chunk it reads to a
`FailureDetector` and asks it for a verdict; tests feed it lines directly.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

#: (kind, pattern, human summary). Order matters: the first match wins for a line.
FAILURE_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("post-failed", re.compile(r"Error: %(post|pre|pre-install) script failed|There was an error running the "
                               r"kickstart script at line \d+"),
     "a kickstart %post/%pre script with --erroronfail failed"),
    ("kickstart-error", re.compile(r"The following problem occurred on line \d+ of the kickstart file|"
                                   r"Kickstart insufficient|kickstart error|KickstartParseError|"
                                   r"Unknown command: "),
     "the installer refused the kickstart"),
    ("traceback", re.compile(r"Traceback \(most recent call last\)|An unknown error has occurred|"
                             r"crashed on signal \d+"),
     "the installer crashed (traceback)"),
    ("package-error", re.compile(r"packaging: Missed: |packaging: Installation failed|Error in POSTIN scriptlet|"
                                 r"The following error occurred while installing\. +This is a fatal error|"
                                 r"error populating transaction after \d+ retries|Failed to set up installation "
                                 r"source|Error setting up base repository"),
     "package installation failed"),
    ("disk-full", re.compile(r"Not enough disk space|insufficient disk space|No space left on device"),
     "the guest's disk is too small"),
    # the kernel's OOM killer, its panics when nothing can be killed, and an initramfs that does not fit in memory
    # (the unpacking fails first, the panic about the root file system follows: the first line is the cause)
    ("oom", re.compile(r"Out of memory: Killed process|Out of memory:|oom-kill|Out of memory and no killable "
                       r"processes|System is deadlocked on memory|Initramfs unpacking failed: write error|"
                       r"invoked oom-killer"),
     "the guest ran out of memory: give it more (--memory)"),
    ("dracut-emergency", re.compile(r"Entering emergency mode|dracut-initqueue\[\d+\]: Warning: dracut-initqueue "
                                    r"timeout|Starting Dracut Emergency Shell|dracut:/#|Warning: /dev/root "
                                    r"(\(.*\) )?does not exist"),
     "the installer's initramfs dropped to an emergency shell (it could not find its installation image)"),
    ("kernel-panic", re.compile(r"Kernel panic - not syncing"), "the guest kernel panicked"),
)
#: Lines that say the install finished.
SUCCESS_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^\s*Installation complete\b"),
)
#: The installer finished but waits for a key because the kickstart has no poweroff/reboot.
WAITING_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Installation complete\. +Press ENTER to quit"),
)
#: anaconda's package progress line, e.g. "Installing kernel-core-5.14.0-1.el9.x86_64 (12/400)".
PACKAGE_LINE = re.compile(r"Installing (\S+) \((\d+)/(\d+)\)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc|\r")


@dataclass(frozen=True)
class Match:
    """One classified line."""

    kind: str  # a FAILURE_PATTERNS kind, or "success", "waiting"
    channel: str
    line: str
    summary: str


def clean(line: str) -> str:
    """Strip terminal escapes and carriage returns from a console line."""
    return _ANSI.sub("", line).rstrip()


def classify_line(line: str, channel: str = "console") -> Match | None:
    """The verdict one line carries, if any."""
    text = clean(line)
    if not text:
        return None
    for pat in WAITING_PATTERNS:
        if pat.search(text):
            return Match("waiting", channel, text, "the installer finished and waits for a key (no poweroff in "
                         "the kickstart)")
    for kind, pat, summary in FAILURE_PATTERNS:
        if pat.search(text):
            return Match(kind, channel, text, summary)
    for pat in SUCCESS_PATTERNS:
        if pat.search(text):
            return Match("success", channel, text, "the installer reported completion")
    return None


@dataclass
class Verdict:
    """What the detector concluded: kind, summary, and the lines that show it (with some context)."""

    kind: str
    summary: str
    lines: list[str]
    channel: str

    @property
    def failed(self) -> bool:
        return self.kind not in ("success", "waiting")


@dataclass
class FailureDetector:
    """Feed it text as it arrives (any chunking); it keeps the first failure and whether success was seen.

    `context` lines before the offending line are kept, and lines after it are added while they arrive, up to
    `after` lines, so a traceback's body is shown in full.
    """

    context: int = 8
    after: int = 30
    failure: Verdict | None = None
    success: Match | None = None
    waiting: Match | None = None
    _partial: dict[str, str] = field(default_factory=dict)
    _recent: dict[str, deque[str]] = field(default_factory=dict)
    _after_left: int = 0
    packages: list[str] = field(default_factory=list)

    def feed(self, channel: str, text: str) -> list[Match]:
        """Add *text* read from *channel*; return the matches found in the complete lines."""
        buf = self._partial.get(channel, "") + text
        *complete, rest = buf.split("\n")
        self._partial[channel] = rest
        # A prompt without newline ("Press ENTER to quit:") must still be seen.
        if rest and any(p.search(clean(rest)) for p in WAITING_PATTERNS):
            complete.append(rest)
            self._partial[channel] = ""
        found = []
        for line in complete:
            m = self.line(channel, line)
            if m:
                found.append(m)
        return found

    def line(self, channel: str, line: str) -> Match | None:
        """Classify one complete line and update the verdict."""
        text = clean(line)
        recent = self._recent.setdefault(channel, deque(maxlen=self.context))
        if self.failure is not None and self._after_left > 0 and channel == self.failure.channel:
            if text:
                self.failure.lines.append(text)
            self._after_left -= 1
        pm = PACKAGE_LINE.search(text)
        if pm and channel == "installer-log":
            self.packages.append(pm.group(1))
        m = classify_line(text, channel)
        if m is not None:
            if m.kind == "success":
                self.success = self.success or m
            elif m.kind == "waiting":
                self.waiting = self.waiting or m
            elif self.failure is None:
                self.failure = Verdict(m.kind, m.summary, [*recent, text], channel)
                self._after_left = self.after
            elif m.kind == "post-failed" and self.failure.kind == "traceback":
                # the rehearsal (and anaconda) print the traceback first, the specific cause after it
                self.failure.kind, self.failure.summary = m.kind, m.summary
        if text:
            recent.append(text)
        return m

    def verdict(self) -> Verdict | None:
        """The failure if there was one, else success/waiting if seen, else None (still running)."""
        if self.failure:
            return self.failure
        if self.waiting:
            return Verdict("waiting", self.waiting.summary, [self.waiting.line], self.waiting.channel)
        if self.success:
            return Verdict("success", self.success.summary, [self.success.line], self.success.channel)
        return None
