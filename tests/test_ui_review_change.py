"""Review mode for a changed fragment: every release x target composed at git HEAD and now, in the engine and
through the real app."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from textual.widgets import DataTable

from ccis_workbench.ui.engine import Workbench
from ccis_workbench.ui.screens.review import CHANGED, ReviewScreen
from tests.test_ui_support import make_app, make_catalog, settle, sync


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_catalog(tmp_path)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "catalog")
    return root


def test_a_target_change_affects_only_that_target(repo: Path) -> None:
    frag = repo / "kickstarts/targets/openstack.ks.j2"
    frag.write_text(frag.read_text().replace("%end", "echo reviewed-change\n%end", 1))
    wb = Workbench(repo)
    assert wb.changed_fragments() == ["kickstarts/targets/openstack.ks.j2"]
    cells = {(c.release, c.target): c for c in wb.review_change("kickstarts/targets/openstack.ks.j2")}
    openstack = cells[("centos-stream-9", "openstack")]
    assert openstack.applicable and openstack.affected and openstack.diff_lines == 1
    other = cells[("centos-stream-9", "ui-box")]
    assert other.applicable and not other.affected and other.diff_lines == 0


def test_a_change_that_breaks_a_cell_is_named(repo: Path) -> None:
    frag = repo / "kickstarts/targets/openstack.ks.j2"
    frag.write_text(frag.read_text() + "\nfrobnicate --now\n")
    cells = list(Workbench(repo).review_change("kickstarts/targets/openstack.ks.j2"))
    broken = [c for c in cells if c.broken]
    assert [(c.release, c.target) for c in broken] == [("centos-stream-9", "openstack")]
    assert "Unknown command" in broken[0].reason or "frobnicate" in broken[0].reason


def test_outside_git_there_is_nothing_to_review(tmp_path: Path) -> None:
    assert Workbench(make_catalog(tmp_path)).changed_fragments() == []


@sync
async def test_review_screen_offers_and_shows_the_change(repo: Path) -> None:
    base = repo / "kickstarts/baseline/centos-stream-9.ks.j2"
    base.write_text(base.read_text().replace("firewall --disabled", "firewall --enabled --service=ssh"))
    app = make_app(repo)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.screen.query_one("#kickstart").focus()
        await pilot.press("r")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert review.changed == ["kickstarts/baseline/centos-stream-9.ks.j2"]
        review.query_one("#review-overlay").value = CHANGED + "kickstarts/baseline/centos-stream-9.ks.j2"
        await settle(pilot)
        assert review.done and "change to kickstarts/baseline/centos-stream-9.ks.j2" in review.sub_title
        # the baseline is under every target: every cell moves
        assert review.cells and all(c.affected and c.diff_lines >= 1 for c in review.cells.values())
        cell = str(review.query_one("#matrix", DataTable).get_cell("centos-stream-9", "openstack"))
        assert "±" in cell


def test_each_changed_file_shows_its_own_impact_alone(repo: Path) -> None:
    """Two files changed: reviewing one must not count the other's lines (it showed the whole tree vs HEAD)."""
    target = repo / "kickstarts/targets/openstack.ks.j2"
    target.write_text(target.read_text().replace("%end", "echo target-change\n%end", 1))
    base = repo / "kickstarts/baseline/centos-stream-9.ks.j2"
    base.write_text(base.read_text().replace("firewall --disabled", "firewall --enabled --service=ssh"))
    wb = Workbench(repo)
    assert wb.changed_fragments() == ["kickstarts/baseline/centos-stream-9.ks.j2",
                                      "kickstarts/targets/openstack.ks.j2"]
    by_target = {c.target: c for c in wb.review_change("kickstarts/targets/openstack.ks.j2")}
    assert by_target["openstack"].diff_lines == 1 and not by_target["ui-box"].affected
    by_base = {c.target: c for c in wb.review_change("kickstarts/baseline/centos-stream-9.ks.j2")}
    assert by_base["openstack"].affected and by_base["ui-box"].affected
    assert by_base["openstack"].diff_lines == by_base["ui-box"].diff_lines  # the target's line is not counted


def test_a_new_file_counts_as_added(repo: Path) -> None:
    (repo / "kickstarts/overlays/ui-new.yaml").write_text("name: ui-new\ntitle: New\npackages: [tmux]\n")
    cells = list(Workbench(repo).review_change("kickstarts/overlays/ui-new.yaml"))
    assert cells and all(c.overlays == ["ui-new"] for c in cells)
    assert any(c.applicable and c.affected for c in cells)


def test_the_diff_tab_against_git_head(repo: Path) -> None:
    from ccis_workbench.ui.engine import Choice

    wb = Workbench(repo)
    ch = Choice("centos-stream-9", "openstack")
    comp = wb.compose(ch)
    unchanged = wb.diff(comp, ch, "head", None, None)
    assert unchanged.error == "" and not unchanged.diff.unified.strip()
    target = repo / "kickstarts/targets/openstack.ks.j2"
    target.write_text(target.read_text().replace("%end", "echo head-diff\n%end", 1))
    wb = Workbench(repo)
    comp = wb.compose(ch)
    changed = wb.diff(comp, ch, "head", None, None)
    assert "+echo head-diff" in changed.diff.unified and changed.label.startswith("git HEAD")
    outside = Workbench(make_catalog(repo.parent / "plain"))
    none = outside.diff(outside.compose(ch), ch, "head", None, None)
    assert "not in a git checkout" in none.error


@sync
async def test_the_review_marks_what_comes_from_the_contributor_s_branch(repo: Path) -> None:
    """A reviewer on a contributor's branch sees which overlays and changed files are the branch's own."""
    from textual.widgets import Select

    from ccis_workbench.flows.trust import FROM_BRANCH

    _git(repo, "branch", "-M", "main")
    _git(repo, "checkout", "-q", "-b", "contribution")
    alpha = repo / "kickstarts/overlays/ui-alpha.yaml"
    alpha.write_text(alpha.read_text().replace("htop", "htop\n  - tmux"))
    _git(repo, "-c", "user.name=c", "-c", "user.email=c@example.com", "commit", "-qam", "contribution")
    alpha.write_text(alpha.read_text() + "# and an uncommitted edit\n")
    app = make_app(repo)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.open_review("ui-alpha")
        await settle(pilot, rounds=6)
        select = app.screen.query_one("#review-overlay", Select)
        labels = {str(value): str(prompt) for prompt, value in select._options}
        assert labels["ui-alpha"] == f"ui-alpha  ({FROM_BRANCH})"
        assert labels["ui-gamma"] == "ui-gamma"
        assert labels[CHANGED + "kickstarts/overlays/ui-alpha.yaml"].endswith(f"({FROM_BRANCH})")
