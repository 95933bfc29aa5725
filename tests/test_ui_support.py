"""Shared helpers for the UI tests (no tests here): a small catalog copied from the repo plus test overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

from ccis_workbench.ui.app import WorkbenchApp
from ccis_workbench.ui.capabilities import FixedCapabilities, HostStatus

REPO = Path(__file__).resolve().parents[1]

OVERLAYS = {
    "ui-alpha": ("""\
name: ui-alpha
title: Alpha tools
description: adds tmux and a %post marker
packages:
  - htop
""", """\
%packages
tmux
%end

%post
echo alpha > /etc/ui-alpha
%end
"""),
    "ui-beta": ("""\
name: ui-beta
title: Beta permissive
description: makes SELinux permissive (overrides the baseline)
conflicts: [ui-alpha]
""", """\
selinux --permissive
"""),
    "ui-gamma": ("""\
name: ui-gamma
title: Gamma on alpha
requires: [ui-alpha]
services:
  enabled: [tmp.mount]
variables:
  gamma_user:
    type: str
    default: ""
    pattern: "[a-z]+"
    description: a user to create
""", """\
{% if vars.gamma_user %}
user --name={{ vars.gamma_user }}
{% endif %}
"""),
    "ui-ten": ("""\
name: ui-ten
title: Stream 10 only
releases: [centos-stream-10]
""", ""),
}

TARGET_BOX = """\
name: ui-box
title: UI test box
agent: none
formats: [raw]
releases: [centos-stream-9]
arches: [x86_64]
"""


def make_catalog(tmp: Path) -> Path:
    """A catalog root under *tmp*: a frozen Stream 9 release, baseline, openstack target and profile, plus
    the test overlays above (ui-beta conflicts with ui-alpha, ui-gamma requires ui-alpha, ui-ten is Stream 10
    only) and a second target (ui-box)."""
    root = tmp / "catalog"
    # A frozen copy (tests/data/mini_catalog) so that edits to the shipped catalog do not move these tests
    shutil.copytree(REPO / "tests/data/mini_catalog", root)
    ks = root / "kickstarts"
    (ks / "overlays").mkdir(exist_ok=True)
    (ks / "targets/ui-box.yaml").write_text(TARGET_BOX)
    for name, (meta, fragment) in OVERLAYS.items():
        (ks / "overlays" / f"{name}.yaml").write_text(meta)
        if fragment:
            (ks / "overlays" / f"{name}.ks.j2").write_text(fragment)
    return root


def make_app(root: Path | str, status: HostStatus | None = None, profile: str | None = "openstack-stream9",
             theme: str | None = None) -> WorkbenchApp:
    """The real app on *root* with a fixed host status (no libvirt, no clock)."""
    return WorkbenchApp(root, capabilities=FixedCapabilities(status), profile=profile, theme=theme)


async def settle(pilot, rounds: int = 4) -> None:  # type: ignore[no-untyped-def]
    """Wait until workers are done and their messages are handled (workers start workers: a few rounds)."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def sync(fn):  # type: ignore[no-untyped-def]
    """Run an async test with asyncio.run (the project does not depend on pytest-asyncio)."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
