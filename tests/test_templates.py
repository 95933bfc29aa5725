"""Provenance through Jinja2: plain lines, loops, includes, expressions that make several lines."""

from __future__ import annotations

from pathlib import Path

from ccis_workbench.core.templates import FragmentRenderer


def test_lines_keep_their_source(tmp_path: Path) -> None:
    (tmp_path / "a.j2").write_text("one\n{% for p in ps %}\npkg {{ p }}\n{% endfor %}\n"
                                   "{% include 'b.j2' %}\n{{ multi }}\nlast\n")
    (tmp_path / "b.j2").write_text("inc {{ ps[0] }}\n")
    lines = FragmentRenderer(tmp_path).render("a.j2", {"ps": ["x", "y"], "multi": "m1\nm2"})
    got = [(sl.text, sl.file, sl.line) for sl in lines]
    assert got == [("one", "a.j2", 1), ("pkg x", "a.j2", 3), ("pkg y", "a.j2", 3), ("inc x", "b.j2", 1),
                   ("m1", "a.j2", 6), ("m2", "a.j2", 6), ("last", "a.j2", 7)]


def test_strict_undefined_and_sandbox(tmp_path: Path) -> None:
    import pytest

    from ccis_workbench.core.errors import TemplateError

    (tmp_path / "u.j2").write_text("a\n{{ nope }}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path).render("u.j2", {})
    assert err.value.location.line == 2 and "nope" in err.value.message
    (tmp_path / "s.j2").write_text("{{ cycler.__init__.__globals__ }}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path).render("s.j2", {})
    assert err.value.title in ("Unsafe template", "Undefined template variable")


def test_include_outside_root_is_refused(tmp_path: Path) -> None:
    import pytest

    from ccis_workbench.core.errors import TemplateError

    (tmp_path / "root").mkdir()
    (tmp_path / "secret").write_text("x\n")
    (tmp_path / "root/a.j2").write_text("{% include '../secret' %}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path / "root").render("a.j2", {})
    assert err.value.title == "Template not found"
