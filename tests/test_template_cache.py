"""Compiled templates kept between runs (core/template_cache.py): the same output and the same provenance as a
fresh compile, whatever order the templates come in; a changed source is compiled again; a cache directory or file
that is not the user's own, or not whole, is never used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.template_cache import TemplateCodeCache
from ccis_workbench.core.templates import FragmentRenderer

REPO = Path(__file__).resolve().parents[1]


def _lines(root: Path, cache: Path, *names: str) -> list[list[tuple[str, str, int]]]:
    """Render *names* in this order with one renderer (one process's template ids) over *cache*."""
    renderer = FragmentRenderer(root, code_cache=cache)
    lines = [[(sl.text, sl.file, sl.line) for sl in renderer.render(n, {"v": "x"})] for n in names]
    renderer.code_cache.commit()  # what Composer does once a composition succeeds
    return lines


@pytest.fixture
def two_templates(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    root.mkdir()
    (root / "a.j2").write_text("a one\n{% include 'c.j2' %}\na two {{ v }}\n")
    (root / "b.j2").write_text("b one\nb two\n{% include 'c.j2' %}\n")
    (root / "c.j2").write_text("c included\n")
    return root


def test_cached_code_gives_the_same_lines_and_provenance(two_templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _lines(two_templates, cache, "a.j2", "b.j2")
    stored = sorted(p.name for p in cache.iterdir())
    assert len(stored) == 3, stored  # a, b and the included c
    again = _lines(two_templates, cache, "a.j2", "b.j2")
    assert again == first == _lines(two_templates, tmp_path / "other-cache", "a.j2", "b.j2")
    assert sorted(p.name for p in cache.iterdir()) == stored, "a hit writes nothing new"
    assert first[0] == [("a one", "a.j2", 1), ("c included", "c.j2", 1), ("a two x", "a.j2", 3)]


def test_another_order_never_credits_lines_to_another_template(two_templates: Path, tmp_path: Path) -> None:
    """The markers in compiled code carry the template's id in the renderer that compiled it; in another order
    the ids differ, so that code is not reused (it would name the wrong file)."""
    cache = tmp_path / "cache"
    a_then_b = _lines(two_templates, cache, "a.j2", "b.j2")
    b_then_a = _lines(two_templates, cache, "b.j2", "a.j2")
    assert b_then_a == [a_then_b[1], a_then_b[0]]
    assert {f for lines in b_then_a for _, f, _ in lines} == {"a.j2", "b.j2", "c.j2"}
    assert b_then_a[0] == [("b one", "b.j2", 1), ("b two", "b.j2", 2), ("c included", "c.j2", 1)]


def test_a_changed_source_is_compiled_again(two_templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _lines(two_templates, cache, "a.j2")
    (two_templates / "c.j2").write_text("c changed\nc second\n")
    (two_templates / "a.j2").write_text("a new\n{% include 'c.j2' %}\n")
    assert _lines(two_templates, cache, "a.j2") == [
        [("a new", "a.j2", 1), ("c changed", "c.j2", 1), ("c second", "c.j2", 2)]]


def test_a_corrupt_or_foreign_file_is_compiled_again(two_templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    good = _lines(two_templates, cache, "a.j2", "b.j2")
    files = sorted(cache.iterdir())
    whole = {p: p.read_bytes() for p in files}
    files[0].write_bytes(whole[files[0]][:-20])  # truncated
    files[1].write_bytes(b"\x00" * 100)  # not ours
    files[2].unlink()
    (tmp_path / "elsewhere").write_bytes(whole[files[2]])
    files[2].symlink_to(tmp_path / "elsewhere")  # a link, even to the right content: never followed
    assert _lines(two_templates, cache, "a.j2", "b.j2") == good
    # each was a miss: compiled again and stored whole, the link replaced by a file of the cache's own
    assert {p: p.read_bytes() for p in files} == whole and not files[2].is_symlink()


def test_a_directory_open_to_others_is_not_used(two_templates: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    os.chown(shared, 12345, 12345)  # another user's directory (the tests run as root)
    assert not TemplateCodeCache(shared, lambda name: 0).usable()
    assert _lines(two_templates, shared, "a.j2")[0][0] == ("a one", "a.j2", 1)
    assert list(shared.iterdir()) == [], "nothing written into another user's directory"
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    assert not TemplateCodeCache(mine, lambda name: 0).usable() and (mine.stat().st_mode & 0o777) == 0o755, \
        "reading neither uses an open directory nor changes it"
    assert TemplateCodeCache(mine, lambda name: 0).usable(create=True) and (mine.stat().st_mode & 0o077) == 0, \
        "the user's own directory is closed to others before anything is written into it"


def test_a_cache_that_cannot_be_written_is_no_error(two_templates: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("a file where the cache directory would be\n")
    assert _lines(two_templates, blocked / "templates", "a.j2")[0][0] == ("a one", "a.j2", 1)


def test_bad_input_keeps_nothing(two_templates: Path, tmp_path: Path) -> None:
    """A template compiled on the way to a composition that fails is not written: bad input writes nothing
    anywhere, not even the cache directory (Composer discards on failure; through the CLI:
    tests/security/test_templates_bounded.py checks $HOME unchanged)."""
    from ccis_workbench.core.errors import TemplateError

    (two_templates / "bad.j2").write_text("{% include 'c.j2' %}\n{{ nope }}\n")
    cache = tmp_path / "cache"
    renderer = FragmentRenderer(two_templates, code_cache=cache)
    renderer.render("a.j2", {"v": "x"})
    with pytest.raises(TemplateError):
        renderer.render("bad.j2", {})
    renderer.code_cache.discard()
    renderer.code_cache.commit()
    assert not cache.exists()


def test_render_through_the_cli_uses_the_users_cache(tmp_path: Path) -> None:
    """Two cold `render` runs of a shipped profile: the first fills $XDG_CACHE_HOME/ccis-workbench/templates,
    the second uses it; both write the same kickstart."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    outs = []
    for i in range(2):
        out = tmp_path / f"ks{i}.cfg"
        subprocess.run([sys.executable, "-m", "ccis_workbench", "render", "openstack-stream9", "-o", str(out)],
                       cwd=REPO, env=env, check=True, capture_output=True)
        outs.append(out.read_text())
        stored = sorted((tmp_path / "xdg/ccis-workbench/templates").glob("*.code"))
        mtimes = [p.stat().st_mtime_ns for p in stored]
        if i == 0:
            first = (stored, mtimes)
    assert outs[0] == outs[1] and outs[0].startswith("# Generated by ccis-workbench")
    assert stored and (stored, mtimes) == first, "the second run compiled nothing again"
