"""Line-tracked YAML and value checks (property-based for the injection rules)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccis_workbench.core.errors import CatalogError, ValueRejected
from ccis_workbench.core.values import VARIABLES, check_value
from ccis_workbench.core.yamlfile import load_yaml_text


def test_lines_of_keys_and_items() -> None:
    data = load_yaml_text("a: 1\nb:\n  - x\n  - y\nc:\n  d: 2\n", "f.yaml")
    assert data.line_of("a") == 1 and data.line_of("b") == 2
    assert data["b"].line_of(1) == 4 and data["c"].line_of("d") == 6


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(CatalogError) as err:
        load_yaml_text("a: !!python/object/apply:os.system ['true']\n", "f.yaml")
    assert err.value.location.line == 1


@given(st.text(min_size=1, max_size=30), st.sampled_from(["\n", "\r", "\x00", "\x1b"]))
def test_control_characters_never_pass(prefix: str, bad: str) -> None:
    for name in ("hostname", "timezone", "locale", "keyboard"):
        with pytest.raises(ValueRejected):
            check_value(name, prefix + bad + "x", VARIABLES[name], "p.yaml", 3)


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20))
def test_section_and_option_injection_never_pass(rest: str) -> None:
    for value in ("%" + rest, "--" + rest, " %" + rest):
        for name in ("hostname", "timezone", "extra_packages", "extra_kernel_args"):
            v = [value] if VARIABLES[name].type == "list" else value
            with pytest.raises(ValueRejected):
                check_value(name, v, VARIABLES[name], "p.yaml", 3)


def test_good_values_pass() -> None:
    assert check_value("hostname", "node-1.example.com", VARIABLES["hostname"], "p", 1) == "node-1.example.com"
    assert check_value("extra_packages", ["vim", "-tar", "@core"], VARIABLES["extra_packages"], "p", 1)
    assert check_value("timezone", "Europe/Brussels", VARIABLES["timezone"], "p", 1)
    with pytest.raises(ValueRejected):
        check_value("disk_size", 1, VARIABLES["disk_size"], "p", 1)
