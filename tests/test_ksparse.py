"""The cloned handlers behave exactly like pykickstart's own fresh handlers."""

from __future__ import annotations

import pytest
from pykickstart.version import makeVersion, stringToVersion

from ccis_workbench.core.ksparse import make_handler, parse_text

SAMPLE = """text
lang en_US.UTF-8
keyboard us
timezone UTC --utc
network --bootproto=dhcp --device=eth0 --onboot=on
network --hostname=a.example.com
repo --name=x --baseurl=http://127.0.0.1/x/
user --name=cloud --groups=wheel --lock
rootpw --lock --iscrypted locked
selinux --enforcing
services --enabled=sshd --disabled=kdump
bootloader --append="console=ttyS0,115200n8"
part / --fstype=xfs --size=4096 --grow
poweroff
%packages
@core
-plymouth
%end
%post --nochroot
echo hi
%end
"""


@pytest.mark.parametrize("version", ["RHEL7", "RHEL8", "RHEL9", "RHEL10"])
def test_clone_parses_like_a_fresh_handler(version: str) -> None:
    text = SAMPLE if version != "RHEL7" else SAMPLE.replace("%packages", "%packages --nobase")
    fresh = makeVersion(stringToVersion(version))
    from pykickstart.parser import KickstartParser

    KickstartParser(fresh).readKickstartFromString(text)
    first, _ = parse_text(text, version)
    second, _ = parse_text(text, version)  # made from the prototype again: no state may leak between copies
    assert str(first) == str(fresh) == str(second)


def test_copies_do_not_share_state() -> None:
    a = make_handler("RHEL9")
    b = make_handler("RHEL9")
    parse_text("network --device=eth0 --bootproto=dhcp\n", "RHEL9")
    assert a.network.network is not b.network.network
    assert a.commands["network"] is a.network and a.network.handler is a
    assert b.network.network == [] and b.packages.packageList == []


def test_errors_are_collected_with_lines() -> None:
    _, problems = parse_text("lang en_US\nfrobnicate\ninstall\n", "RHEL9")
    assert [(p.severity, p.line) for p in problems] == [("error", 2), ("error", 3)]
    _, problems = parse_text("lang en_US\nauth --enableshadow\n", "RHEL9")
    assert problems and problems[0].severity == "deprecated" and problems[0].line == 2


def test_handlers_keep_their_own_syntax_after_other_versions_are_parsed() -> None:
    text = "%packages --instLangs=en --excludeWeakdeps\n@core\n%end\n"
    rhel8, _ = parse_text(text, "RHEL8")
    parse_text("%packages --inst-langs=en\n@core\n%end\n", "RHEL10")
    assert "--instLangs=en" in str(rhel8) and "--inst-langs" not in str(rhel8)


def test_unclosed_quote_is_an_error_with_its_line() -> None:
    _, problems = parse_text('lang en_US\n\nbootloader --append="console=ttyS0\n', "RHEL9")
    assert [(p.severity, p.line) for p in problems] == [("error", 3)]
