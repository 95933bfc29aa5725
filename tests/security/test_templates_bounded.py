"""Bounded templates (issue 14): a contributor's fragment cannot take the memory, the time or the machine.

Each CLI test writes a hostile fragment into a private catalog (tmp_path) and runs the real CLI in a subprocess
under an address-space limit and a timeout: one clear message naming the fragment's file and line, exit status 2,
no traceback, and nothing written (no output file, no file changed in the catalog or next to it, nothing in a
private HOME). Without the bounds, the reproducers of the issue grew to 14.5 GB or allocated 3 GB.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.errors import TemplateError
from ccis_workbench.core.render_limits import RenderLimits
from ccis_workbench.core.templates import FragmentRenderer

MEMORY_LIMIT = 1024 * 1024 * 1024  # 1 GiB: the CLI needs about 150 MB; the reproducers asked for 3 to 14.5 GB
TIME_LIMIT = 20  # seconds: a refusal takes well under one; the reproducers ran until killed
FRAGMENT = "kickstarts/overlays/alpha.ks.j2"  # the overlay the mini catalog's profile p uses


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


def refuse_fragment(tmp_path: Path, catalog: Path, fragment: str, line: int, *words: str) -> str:
    """Write *fragment* as the overlay's template, run `render p -o OUT` bounded in time and memory, expect
    exit 2 with FRAGMENT:line and *words* in the first line, and nothing written anywhere. Returns stderr."""
    (catalog / FRAGMENT).write_text(fragment)
    out_dir = tmp_path / "out"
    home = tmp_path / "home"
    out_dir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
    }
    before = _tree(tmp_path)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccis_workbench",
            "--catalog",
            str(catalog),
            "render",
            "p",
            "-o",
            str(out_dir / "out.ks"),
        ],
        capture_output=True,
        text=True,
        cwd=catalog,
        env=env,
        timeout=TIME_LIMIT,
        preexec_fn=_limit_memory,
        check=False,
    )
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr
    first = res.stderr.splitlines()[0]
    assert f"{FRAGMENT}:{line}:" in first, res.stderr
    for w in words:
        assert w.lower() in res.stderr.lower(), res.stderr
    assert _tree(tmp_path) == before, "nothing may be written on bad input"
    return res.stderr


# -- item 1: the issue's three reproducers, and the other ways a size multiplies --------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        '{{ "a" * 10000000000 }}',
        '{{ "a".ljust(3000000000) | length }}',
        '{{ "x" | center(3000000000) }}',
    ],
    ids=["mul", "ljust", "center"],
)
def test_issue_reproducers_end_with_a_clear_error(tmp_path: Path, mini_catalog: Path, expr: str) -> None:
    refuse_fragment(tmp_path, mini_catalog, f"lang en_US\n{expr}\n", 2, "template output over 1 MiB")


# Each of these asks for gigabytes (or runs for ever) when unbounded; each is refused before it allocates.
SIZE_BOMBS = {
    "list-mul": "{{ ([0] * 3000000000) | length }}",
    "rmul": "{{ 3000000000 * 'ab' }}",
    "pow": "{{ 2 ** 10000000000 }}",
    "int-square": "{% set ns = namespace(n=2) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}"
    "{{ ns.n > 0 }}",
    "plus-doubling": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "tilde-doubling": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "rjust": "{{ 'x'.rjust(3000000000) | length }}",
    "zfill": "{{ '1'.zfill(3000000000) | length }}",
    "str-center": "{{ 'x'.center(3000000000) | length }}",
    "expandtabs": "{{ ('\\t' * 1000).expandtabs(3000000) | length }}",
    "str-format-width": "{{ '{:>3000000000}'.format('x') | length }}",
    "str-format-nested": "{{ '{:>{}}'.format('x', 3000000000) | length }}",
    "str-format-repeat": "{{ ('{0}' * 100000).format('a' * 100000) | length }}",
    "format-map": "{{ '{a:>3000000000}'.format_map({'a': 'x'}) | length }}",
    "percent": "{{ ('%3000000000s' % 'x') | length }}",
    "percent-star": "{{ ('%*s' % (3000000000, 'x')) | length }}",
    "format-filter": "{{ '%3000000000s' | format('x') | length }}",
    "str-join": "{{ ('a' * 1000000).join(['b'] * 100000) | length }}",
    "join-filter": "{{ (['a' * 1000000] * 1000) | join | length }}",
    "join-separator": "{{ (['b'] * 100000) | join('a' * 1000000) | length }}",
    "str-replace": "{{ ('a' * 1000000).replace('', 'bb') | length }}",
    "replace-filter": "{{ ('a' * 1000000) | replace('a', 'b' * 1000) | length }}",
    "translate": "{{ ('a' * 1000000).translate({97: 'b' * 1000}) | length }}",
    "indent": "{{ ('a\\n' * 1000) | indent(3000000) | length }}",
    "indent-string": "{{ ('a\\n' * 100000) | indent('b' * 100000) | length }}",
    "wordwrap": "{{ ('a ' * 100000) | wordwrap(1, wrapstring='x' * 1000) | length }}",
    "batch": "{{ [1] | batch(1000000000, 0) | list | length }}",
    "slice": "{{ [1] | slice(1000000000) | list | length }}",
    "tojson-indent": "{{ [[[[1]]]] | tojson(1000000000) | length }}",
    "urlize-target": "{{ ('www.a.io ' * 10000) | urlize(target='x' * 100000) | length }}",
    "sum-lists": "{{ ([['a' * 1000] * 1000] * 1000) | sum(start=[]) | length }}",
    "lipsum": "{{ lipsum(100000, False, 10000, 10000) | length }}",
    "data-loop": "{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
    "expression-loop": "{% for a in range(100000) %}{% for b in range(100000) %}"
    "{{ a ~ ' - 40 characters of output per step -' }}{% endfor %}{% endfor %}",
    "range": "{% for i in range(1000000000) %}x{% endfor %}",
    "map-list": "{{ range(100000) | map('string') | map('center', 20000) | list | length }}",
    "forceescape": "{{ ('&' * 1000000) | forceescape | forceescape | forceescape | length }}",
}


@pytest.mark.parametrize("name", sorted(SIZE_BOMBS))
def test_size_bombs_are_refused_in_process(tmp_path: Path, name: str) -> None:
    (tmp_path / "f.ks.j2").write_text(f"lang en_US\n{SIZE_BOMBS[name]}\nlast\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path).render("f.ks.j2", {})
    assert err.value.location is not None and err.value.location.file == "f.ks.j2"
    assert err.value.location.line == 2, err.value
    assert err.value.title == "Template too large", err.value


@pytest.mark.parametrize(
    "name", ["pow", "str-format-nested", "percent-star", "str-join", "indent", "lipsum", "data-loop", "expression-loop"]
)
def test_size_bombs_through_the_cli(tmp_path: Path, mini_catalog: Path, name: str) -> None:
    refuse_fragment(tmp_path, mini_catalog, f"lang en_US\n{SIZE_BOMBS[name]}\n", 2, "Template too large")


@pytest.mark.parametrize(
    "loop",
    [
        "{% set r = range(100000) | list %}{% for a in r %}{% for b in r %}{% for c in r %}{% endfor %}{% endfor %}"
        "{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% if a < 0 %}x{% endif %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% set c = a * b %}{% endfor %}{% endfor %}",
    ],
    ids=["empty-nest", "if-nest", "set-nest"],
)
def test_endless_loops_end_at_the_time_limit(tmp_path: Path, loop: str) -> None:
    (tmp_path / "f.ks.j2").write_text(f"lang en_US\n{loop}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path, RenderLimits(max_seconds=0.3)).render("f.ks.j2", {})
    assert err.value.title == "Template too slow"
    assert "template took over 0.3 s" in err.value.message
    assert (err.value.location.file, err.value.location.line) == ("f.ks.j2", 2), err.value


def test_endless_loop_through_the_cli(tmp_path: Path, mini_catalog: Path) -> None:
    loop = (
        "{% set r = range(100000) | list %}{% for a in r %}{% for b in r %}{% for c in r %}{% endfor %}"
        "{% endfor %}{% endfor %}"
    )
    refuse_fragment(tmp_path, mini_catalog, f"lang en_US\n\n{loop}\n", 3, "template took over 2 s")


def test_recursion_is_a_clear_error(tmp_path: Path, mini_catalog: Path) -> None:
    refuse_fragment(
        tmp_path,
        mini_catalog,
        "lang en_US\n{% for n in [1] recursive %}{{ loop([n]) }}{% endfor %}\n",  # macros are refused outright
        2,
        "Template too deep",
    )


def test_include_of_a_bomb_names_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/bomb.ks.j2").write_text("ok\n\n{{ 'a' * 10000000000 }}\n")
    (tmp_path / "f.ks.j2").write_text("lang en_US\n{% include 'shared/bomb.ks.j2' %}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path).render("f.ks.j2", {})
    assert (err.value.location.file, err.value.location.line) == ("shared/bomb.ks.j2", 3), err.value


def test_layer_output_cap_is_the_limit(tmp_path: Path) -> None:
    """Just under the limit renders; just over it is refused (the limit is what the README states)."""
    limits = RenderLimits(max_output=10_000)
    (tmp_path / "under.ks.j2").write_text("{% for i in range(90) %}\n{{ 'x' * 100 }}\n{% endfor %}\n")
    lines = FragmentRenderer(tmp_path, limits).render("under.ks.j2", {})
    assert len(lines) == 90 and lines[0].text == "x" * 100 and lines[0].line == 2
    (tmp_path / "over.ks.j2").write_text("{% for i in range(200) %}\n{{ 'x' * 100 }}\n{% endfor %}\n")
    with pytest.raises(TemplateError) as err:
        FragmentRenderer(tmp_path, limits).render("over.ks.j2", {})
    assert err.value.title == "Template too large" and "template output over 10,000 characters" in err.value.message
    assert (err.value.location.file, err.value.location.line) == ("over.ks.j2", 2), err.value


def test_ordinary_templates_still_render(tmp_path: Path) -> None:
    """The bounds do not change what a well-behaved fragment renders (loops, loop.length, joins, formats, ~)."""
    (tmp_path / "f.ks.j2").write_text(
        "{% for p in pkgs %}{{ p }}{{ ',' if not loop.last }}{% endfor %} of {{ pkgs | length }}\n"
        "{{ pkgs | join(' ') }} {{ '%s-%02d' % ('a', 3) }} {{ '{}={}'.format('k', 'v') }} {{ 'x' ~ 1 }}\n"
        "{{ 'a b'.replace(' ', '_') }} {{ 'ab' | center(6) }}| {{ [1, [2]] | tojson }} {{ 2 ** 10 }}\n"
        "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}\n"
    )
    lines = FragmentRenderer(tmp_path).render("f.ks.j2", {"pkgs": ["vim", "tar"]})
    assert [sl.text for sl in lines] == ["vim,tar of 2", "vim tar a-03 k=v x1", "a_b   ab  | [1, [2]] 1024", "10"]


# -- item 2: composing untrusted content in a worker process with resource limits -------------------------------

# Each value is allowed (1 MB), and each is kept in a variable of its own: 3000 of them get past the in-process
# checks with 3 GB, and only the worker's address-space limit stops them.
PAST_THE_CHECKS = "{% set s = 'x' * 1000000 %}" + "".join(f"{{% set a{i} = s | upper %}}" for i in range(3000))


def bounded(reason: str) -> bool:
    """The worker's memory limit ends an allocating fragment, or on a busy machine the per-layer clock does first:
    both are the right answer, as long as the reason names one of them."""
    return "memory" in reason or "took over" in reason


ENDLESS = "{% set r = range(100000) | list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}"


def _bomb_overlay(catalog: Path, fragment: str) -> None:
    ov = catalog / "kickstarts/overlays"
    (ov / "bomb.yaml").write_text("name: bomb\ntitle: Bomb\n")
    (ov / "bomb.ks.j2").write_text(f"lang en_US\n{fragment}\n")


def test_isolated_composition_is_the_same_composition(catalog, repo_root: Path) -> None:
    from ccis_workbench.core import lint
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.diff import diff_compositions
    from ccis_workbench.flows.isolated import IsolatedComposer

    local = Composer(catalog)
    names = ["openstack-stream9", "aws-stream9", "docker-stream9"]
    with IsolatedComposer(repo_root) as isolated:
        for name in names:
            profile = catalog.load_profile(name)
            a, b = local.compose(profile), isolated.compose(profile)
            assert b.text == a.text
            assert [ln.origins for ln in b.lines] == [ln.origins for ln in a.lines]
            assert b.overrides == a.overrides
            assert [(f.rule, f.line, f.severity) for f in lint.lint_composition(b)] == [
                (f.rule, f.line, f.severity) for f in lint.lint_composition(a)
            ]
            base = local.compose_baseline(a.release.name, a.variables)
            assert diff_compositions(base, b).unified == diff_compositions(base, a).unified


def test_allocation_past_the_checks_ends_in_the_worker(mini_catalog: Path) -> None:
    from ccis_workbench.core.compose import choice
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.isolated import IsolatedComposer, WorkerLimits

    _bomb_overlay(mini_catalog, PAST_THE_CHECKS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with IsolatedComposer(mini_catalog, WorkerLimits(memory_mib=512)) as composer:
        with pytest.raises(WorkbenchError) as err:
            composer.compose(choice("centos-stream-9", "openstack", ["bomb"]))
        assert str(err.value).startswith("kickstarts/overlays/bomb.ks.j2:2: "), err.value
        assert "out of memory" in err.value.message
        # the parent is unharmed and the same composer goes on composing
        assert "lang en_US" in composer.compose(choice("centos-stream-9", "openstack", [])).text
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grew_kib < 200 * 1024, f"the parent's peak memory grew by {grew_kib} KiB"


def test_cpu_limit_ends_a_loop_at_its_line(mini_catalog: Path) -> None:
    from ccis_workbench.core.compose import choice
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.isolated import IsolatedComposer, WorkerLimits

    _bomb_overlay(mini_catalog, ENDLESS)  # the render clock is out of the way: only the CPU limit can stop it
    with IsolatedComposer(mini_catalog, WorkerLimits(cpu_seconds=1, render_seconds=600)) as composer:
        with pytest.raises(WorkbenchError) as err:
            composer.compose(choice("centos-stream-9", "openstack", ["bomb"]))
        assert str(err.value).startswith("kickstarts/overlays/bomb.ks.j2:2: "), err.value
        assert "took over 1 s of CPU time" in err.value.message
        assert "lang en_US" in composer.compose(choice("centos-stream-9", "openstack", [])).text


def test_worker_that_does_not_answer_is_stopped_and_replaced(mini_catalog: Path) -> None:
    from ccis_workbench.core.compose import choice
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.isolated import IsolatedComposer, WorkerLimits

    _bomb_overlay(mini_catalog, ENDLESS)  # only the parent's wait can stop it
    composer = IsolatedComposer(mini_catalog, WorkerLimits(cpu_seconds=600, wall_seconds=1, render_seconds=600))
    try:
        with pytest.raises(WorkbenchError) as err:
            composer.compose(choice("centos-stream-9", "openstack", ["bomb"]))
        assert err.value.location is not None and err.value.location.file == "kickstarts/overlays/bomb.ks.j2"
        assert "did not finish in 1 s" in err.value.message
    finally:
        composer.close()
    with IsolatedComposer(mini_catalog) as fresh:
        assert "lang en_US" in fresh.compose(choice("centos-stream-9", "openstack", [])).text


def test_worker_that_cannot_start_is_a_clear_error(mini_catalog: Path) -> None:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.isolated import WorkerLimits, compose_isolated

    profile_path = mini_catalog / "profiles/p.yaml"
    from ccis_workbench.core.catalog import Catalog

    profile = Catalog.load(mini_catalog).load_profile(str(profile_path))
    with pytest.raises(WorkbenchError) as err:  # 8 MiB: Python itself cannot start
        compose_isolated(mini_catalog, profile, WorkerLimits(memory_mib=8))
    assert err.value.title == "Composition failed" and "composing p failed" in err.value.message


def test_the_worker_never_imports_code_from_the_catalog(mini_catalog: Path) -> None:
    """A contributor's checkout of this repository has a ccis_workbench/ of its own: the worker runs in isolated
    mode from /, with this installation's package first, so the planted one never runs."""
    from ccis_workbench.core.compose import choice
    from ccis_workbench.flows.isolated import compose_isolated

    marker = mini_catalog / "PLANTED-CODE-RAN"
    for pkg in ("ccis_workbench", "ccis_workbench/flows", "ccis_workbench/core"):
        (mini_catalog / pkg).mkdir(exist_ok=True)
        (mini_catalog / pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (mini_catalog / "ccis_workbench/flows/isolated.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    comp = compose_isolated(mini_catalog, choice("centos-stream-9", "openstack", []))
    assert "lang en_US" in comp.text
    assert not marker.exists()


def test_results_from_the_worker_are_data_only() -> None:
    """The parent unpickles what the worker sends with an allow-list: no function, no dotted name."""
    import io
    import pickle

    from ccis_workbench.core import textfile
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.model import Origin
    from ccis_workbench.flows.isolated import _ResultUnpickler

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("touch /tmp/ccis-pwned",))

    ok = pickle.dumps(("ok", [Origin("layer", "f", 1), {1, 2}, Path("x")]))
    assert _ResultUnpickler(io.BytesIO(ok)).load()[1][0] == Origin("layer", "f", 1)
    for hostile in (
        pickle.dumps(Evil()),
        pickle.dumps(print),
        pickle.dumps(subprocess.Popen),
        pickle.dumps(textfile.read_text),
        pickle.dumps(Catalog.load),
    ):
        with pytest.raises(pickle.UnpicklingError, match="not data"):
            _ResultUnpickler(io.BytesIO(hostile)).load()


def test_review_of_a_hostile_overlay_keeps_the_workbench_up(mini_catalog: Path) -> None:
    """The review screen's matrix (engine.review) composes in the worker: the cell says why, the app goes on."""
    from ccis_workbench.ui.engine import Workbench

    _bomb_overlay(mini_catalog, "{{ 'a' * 10000000000 }}")
    wb = Workbench(mini_catalog)
    cells = list(wb.review("bomb"))
    assert [c.applicable for c in cells] == [False]
    assert "too large" in cells[0].reason.lower() or "1 mib" in cells[0].reason.lower(), cells[0].reason
    assert [c.applicable for c in wb.review("beta")] == [True]


# -- item 3: every value that reaches a template is checked (property-based) ------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ccis_workbench.core.errors import ValueRejected  # noqa: E402
from ccis_workbench.core.values import VARIABLES, Rule, check_context, check_value, text_problem  # noqa: E402

#: what pykickstart treats as a line break (str.splitlines) and what opens sections or options, mixed into text
_DANGEROUS = [
    *"\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029\t\x00\x1b\u202e\u200b%-# ",
    "%pre",
    "%post",
    "%include /etc/passwd",
    "%ksappend http://x/",
    "%end",
    "--",
    "--nochroot",
]
HOSTILE_TEXT = st.lists(st.one_of(st.sampled_from(_DANGEROUS), st.text(max_size=4)), max_size=8).map("".join)
SECTION = ("%pre", "%post", "%include", "%ksappend", "%packages", "%end", "%onerror", "%traceback")


def _one_safe_line(value: str) -> None:
    """What an accepted value guarantees, whatever the line it is put in (pykickstart splits with splitlines)."""
    assert len(f"x {value} y".splitlines()) == 1
    assert text_problem(value) is None
    assert not value.lstrip().startswith(("%", "--"))
    assert all(ch.isprintable() or ch == " " for ch in value), repr(value)


@settings(max_examples=400, deadline=None, database=None)
@given(HOSTILE_TEXT)
def test_free_text_value_is_one_safe_line_or_refused(value: str) -> None:
    try:
        checked = check_value("note", value, Rule("str", None, None, "free text"), "profiles/p.yaml", 7)
    except ValueRejected as exc:
        assert (exc.location.file, exc.location.line) == ("profiles/p.yaml", 7)
        return
    _one_safe_line(checked)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(sorted(n for n, r in VARIABLES.items() if r.type in ("str", "list"))),
    st.lists(HOSTILE_TEXT, min_size=1, max_size=3),
)
def test_every_profile_variable_refuses_what_would_change_a_line(name: str, values: list[str]) -> None:
    rule = VARIABLES[name]
    given_value: object = values if rule.type == "list" else values[0]
    try:
        checked = check_value(name, given_value, rule, "profiles/p.yaml", 5)
    except ValueRejected:
        return
    for v in checked if isinstance(checked, list) else [checked]:
        _one_safe_line(v)


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(["title", "name", "tree_url", "datasources", "default_user"]), HOSTILE_TEXT)
def test_catalog_strings_in_the_template_context_are_checked(key: str, value: str) -> None:
    ctx = {
        "release": {"name": "centos-stream-9", "title": "CentOS Stream 9"},
        "target": {"name": "openstack", "datasources": ["OpenStack"], "default_user": None},
    }
    part = "release" if key in ("title", "tree_url") else "target"
    ctx[part][key] = [value] if key == "datasources" else value
    sources = {"release": "kickstarts/releases/centos-stream-9.yaml", "target": "kickstarts/targets/openstack.yaml"}
    try:
        check_context(ctx, sources, lambda file, k: 3 if k == key else 0)
    except ValueRejected as exc:
        assert (exc.location.file, exc.location.line) == (sources[part], 3)
        return
    _one_safe_line(value)
    if key != "title":
        assert not any(ch.isspace() for ch in value)


@pytest.fixture
def noted_catalog(mini_catalog: Path) -> Path:
    """An overlay with a free-text variable (no pattern) put at the start of a %post line: the loosest place."""
    ov = mini_catalog / "kickstarts/overlays"
    (ov / "noted.yaml").write_text(
        "name: noted\ntitle: Noted\nvariables:\n  note:\n    type: str\n"
        "    default: hello\n    description: free text\n"
    )
    (ov / "noted.ks.j2").write_text("%post\n{{ vars.note }}\necho '{{ vars.note }}'\n%end\n")
    return mini_catalog


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE_TEXT)
def test_no_value_adds_a_line_or_a_section_to_the_kickstart(noted_catalog: Path, value: str) -> None:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer, choice

    composer = Composer(Catalog.load(noted_catalog))
    plain = composer.compose(choice("centos-stream-9", "openstack", ["noted"], {"note": "hello"})).text
    try:
        text = composer.compose(choice("centos-stream-9", "openstack", ["noted"], {"note": value})).text
    except ValueRejected:
        return
    assert len(text.splitlines()) == len(plain.splitlines())
    assert [ln for ln in text.splitlines() if ln.startswith(SECTION)] == [
        ln for ln in plain.splitlines() if ln.startswith(SECTION)
    ]
    assert all(ch.isprintable() or ch in " \n" for ch in text)


@pytest.mark.parametrize(
    ("file", "text", "words"),
    [
        ("kickstarts/releases/centos-stream-9.yaml", None, "release.title"),
        ("kickstarts/targets/openstack.yaml", "datasources: [OpenStack, 'ConfigDrive --nochroot']\n", "datasources"),
        (
            "kickstarts/overlays/noted.yaml",
            "name: noted\ntitle: Noted\nvariables:\n  note:\n    type: str\n"
            '    default: "x\\n%pre\\nrm -rf /\\n%end"\n',
            "note",
        ),
    ],
    ids=["release-title", "target-datasource", "overlay-default"],
)
def test_catalog_values_are_checked_through_the_cli(
    cli, noted_catalog: Path, file: str, text: str | None, words: str
) -> None:
    path = noted_catalog / file
    if text is None:  # a title that pykickstart would read as two lines, the second opening %pre
        path.write_text(path.read_text().replace("title: CentOS Stream 9", 'title: "CentOS\\u2028%pre"'))
    elif file.endswith("openstack.yaml"):
        path.write_text(re.sub(r"(?m)^datasources:.*\n", text, path.read_text()))
    else:
        path.write_text(text)
    (noted_catalog / "profiles/p.yaml").write_text(
        "name: p\nrelease: centos-stream-9\ntarget: openstack\noverlays: [noted]\n"
    )
    res = cli("render", "p", root=noted_catalog)
    assert res.code == 2, (res.code, res.out[-500:], res.err)
    first = res.err.splitlines()[0]
    key = words.rsplit(".", 1)[-1] if words != "note" else "default"
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if re.match(rf"\s*{key}:", ln))
    assert f"{file}:{line}: " in first, res.err
    assert words in res.err and "Traceback" not in res.err


# -- item 4: sandbox escapes (Jinja2's sandbox documentation and the public advisories) --------------------------

UNSAFE = "sandbox refused"
UNDEFINED = "Undefined template variable"
NOT_FOUND = "Template not found"
ESCAPES = {
    # Jinja2 docs, "Sandbox": attributes starting with an underscore and Python internals are unsafe
    "class-mro-subclasses": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", UNSAFE),
    "int-base-subclasses": ("{{ (1).__class__.__base__.__subclasses__() }}", UNSAFE),
    "template-reference-context": ("{{ self._TemplateReference__context }}", UNSAFE),
    "self-init-globals": ("{{ self.__init__.__globals__ }}", UNSAFE),
    "self-dict": ("{{ self.__dict__ }}", UNSAFE),
    "lipsum-globals-os": ("{{ lipsum.__globals__['os'].popen('id').read() }}", UNSAFE),
    "cycler-globals-os": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", UNSAFE),
    "cycler-builtins-open": ("{{ cycler.__init__.__globals__.__builtins__.open('/etc/passwd').read() }}", UNSAFE),
    "joiner-globals": ("{{ joiner.__init__.__globals__ }}", UNSAFE),
    "namespace-globals": ("{{ namespace.__init__.__globals__ }}", UNSAFE),
    "namespace-class": ("{% set ns = namespace() %}{{ ns.__class__ }}", UNSAFE),
    "range-globals": ("{{ range.__globals__ }}", UNSAFE),
    "loop-cycle-globals": ("{% for x in [1] %}{{ loop.cycle.__globals__ }}{% endfor %}", UNSAFE),
    "type-mro": ("{{ dict.mro() }}", UNSAFE),
    "generator-frame": ("{{ (range(3) | map('string')).gi_frame }}", UNSAFE),
    # CVE-2016-10745 (str.format) and CVE-2019-10906 (str.format_map)
    "str-format": ('{{ "{0.__class__}".format(1) }}', UNSAFE),
    "str-format-globals": ('{{ "{0.__init__.__globals__}".format(lipsum) }}', UNSAFE),
    "str-format-map": ('{{ "{x.__class__.__mro__}".format_map({"x": 1}) }}', UNSAFE),
    "markup-format": ('{{ ("{0.__class__}" | safe).format(1) }}', UNSAFE),
    "format-nested-spec": ("{{ \"{0:{1}}\".format(''.__class__, 1) }}", UNSAFE),
    # CVE-2024-56326: str.format reached without calling it directly (stored, mapped, in a cycler)
    "format-stored": ('{% set f = "{0.__class__}".format %}{{ f(1) }}', UNSAFE),
    "format-in-dict": ('{% set d = {"f": "{0.__class__}".format} %}{{ d.f(1) }}', UNSAFE),
    "format-mapped": ('{{ (["{0.__class__}"] | map(attribute="format") | first)(1) }}', UNSAFE),
    "format-cycler": ('{{ cycler("{0.__class__}".format).next()(1) }}', UNSAFE),
    # CVE-2025-27516: the attr filter reaching str.format
    "attr-format": ('{{ ("{0.__class__}" | attr("format"))(1) }}', UNSAFE),
    "attr-format-map": ('{{ ("{x.__class__}" | attr("format_map"))({"x": 1}) }}', UNSAFE),
    # the attr filter and map(attribute=) go through the sandbox too
    "attr-class": ("{{ '' | attr('__class__') }}", UNSAFE),
    "map-attribute": ("{{ [''] | map(attribute='__class__') | list }}", UNSAFE),
    "map-attr-filter": ("{{ [1] | map('attr', '__class__') | list }}", UNSAFE),
    # escapes in the attribute name: the string is the same once parsed
    "hex-escaped-name": ("{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}", UNSAFE),
    "unicode-escaped-name": ("{{ ''['\\u005f\\u005fclass\\u005f\\u005f'] }}", UNSAFE),
    "attr-escaped-name": ("{{ '' | attr('\\x5f\\x5fclass\\x5f\\x5f') }}", UNSAFE),
    # the immutable sandbox: no list or dict is changed in place
    "list-append": ("{{ [].append(1) }}", UNSAFE),
    "dict-update": ("{{ {}.update(a=1) }}", UNSAFE),
    # request-like globals of web frameworks do not exist here
    "flask-request": ("{{ request.application.__globals__ }}", UNDEFINED),
    "flask-config": ("{{ config.items() }}", UNDEFINED),
    "python2-func-globals": ("{{ lipsum.func_globals }}", UNDEFINED),
    # templates come from the catalog only
    "include-traversal": ("{% include '../../../../../../etc/passwd' %}", NOT_FOUND),
    "include-absolute": ("{% include '/etc/passwd' %}", NOT_FOUND),
    "import-absolute": ("{% import '/etc/hostname' as h %}", NOT_FOUND),
    "extends-absolute": ("{% extends '/etc/hostname' %}", NOT_FOUND),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_sandbox_escape_is_refused(tmp_path: Path, mini_catalog: Path, name: str) -> None:
    fragment, words = ESCAPES[name]
    err = refuse_fragment(tmp_path, mini_catalog, f"lang en_US\n{fragment}\n", 2, words)
    assert "root:x:0:0" not in err and "uid=" not in err, "no content from outside the catalog"


def test_review_screen_with_an_allocating_overlay_stays_up(tmp_path: Path) -> None:
    """The TUI's review matrix of an overlay whose fragment allocates past the in-process checks: every cell says
    why, the app's own memory does not grow with the fragment's, and the screen goes on to the next overlay."""
    from ccis_workbench.ui.screens.review import ReviewScreen
    from tests.test_ui_support import make_app, make_catalog, settle, sync

    root = make_catalog(tmp_path)
    _bomb_overlay(root, PAST_THE_CHECKS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @sync
    async def run() -> None:
        app = make_app(root)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            app.screen.query_one("#kickstart").focus()
            await pilot.press("r")
            await settle(pilot)
            review = app.screen
            assert isinstance(review, ReviewScreen)

            async def review_of(overlay: str) -> dict:  # type: ignore[type-arg]
                review.query_one("#review-overlay").value = overlay
                for _ in range(200):  # a loaded machine: the matrix fills in when its worker is done
                    await settle(pilot)
                    if review.overlay == overlay and review.done:
                        break
                    await pilot.pause(0.2)
                assert review.overlay == overlay and review.done
                return review.cells

            cells = await review_of("bomb")
            assert cells
            for cell in cells.values():
                assert not cell.applicable and bounded(cell.reason), cell.reason
            cells = await review_of("ui-alpha")
            assert all(c.applicable for c in cells.values()), [c.reason for c in cells.values()]

    run()
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grew_kib < 300 * 1024, f"the app's peak memory grew by {grew_kib} KiB"


def test_review_of_a_changed_fragment_that_allocates(tmp_path: Path) -> None:
    """A contributor's change to a target fragment, reviewed as a change (HEAD against now): both sides compose in
    workers; every cell the change breaks is named as broken, with the reason, and the workbench goes on."""
    from ccis_workbench.ui.engine import Workbench
    from tests.test_ui_support import make_catalog

    root = make_catalog(tmp_path)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "catalog"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    frag = root / "kickstarts/targets/openstack.ks.j2"
    frag.write_text(frag.read_text() + PAST_THE_CHECKS + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wb = Workbench(root)
    cells = {(c.release, c.target): c for c in wb.review_change("kickstarts/targets/openstack.ks.j2")}
    broken = cells[("centos-stream-9", "openstack")]
    assert broken.broken and bounded(broken.reason), broken
    assert cells[("centos-stream-9", "ui-box")].applicable
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grew_kib < 200 * 1024, f"the workbench's peak memory grew by {grew_kib} KiB"
