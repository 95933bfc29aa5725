"""A fragment must not be able to credit its lines to another layer (`blame`, the preview's provenance gutter):
the provenance markers are control characters the renderer puts at the end of every template line, so an
expression that prints one, or a block that captures rendered lines (and with them their markers) to edit and
print them, is refused at its file:line; no other layer is ever named for the fragment's lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bad_input import _expect_refusal

FORGERIES = {
    "escaped marker in a string": ("{{ 'rootpw --lock\\x1e0:1\\x1f' }}\n", 1, "control character"),
    "marker made with %c": ("{{ '%c' % 30 }}0:1{{ '%c' % 31 }}\n", 1, "control character"),
    "marker made with a filter": ("{{ [30] | map('string') | join }}\n{{ 'x\\u2028rootpw --plaintext x' }}\n", 2,
                                  "control character"),
    "captured by set block": ("{% set x %}rootpw --lock\n{% endset %}{{ x[0:20] }}\n", 1, "{% set %}"),
    "captured by filter block": ("{% filter replace('1', '0') %}rootpw --lock\n{% endfilter %}\n", 1,
                                 "{% filter %}"),
    "captured by a macro": ("\n{% macro m() %}rootpw --lock\n{% endmacro %}{{ m()[0:30] }}\n", 2, "{% macro %}"),
    "captured by call": ("{% call range(1) %}x\n{% endcall %}\n", 1, "{% call %}"),
    "escape character for the terminal": ("{{ '\\x1b[2J' }}\n", 1, "control character"),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_fragment_cannot_forge_provenance(cli, mini_catalog: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    fragment, line, words = FORGERIES[case]
    (mini_catalog / "kickstarts/overlays/alpha.ks.j2").write_text(fragment)
    _expect_refusal(cli, mini_catalog, "kickstarts/overlays/alpha.ks.j2", line, words)


def test_plain_expressions_and_sets_still_render(cli, mini_catalog: Path) -> None:  # type: ignore[no-untyped-def]
    (mini_catalog / "kickstarts/overlays/alpha.ks.j2").write_text(
        "{% set who = vars.hostname %}\n%post\necho {{ who }}\t{{ 'tab ok' }}\n%end\n")
    res = cli("blame", "p", root=mini_catalog)
    assert res.code == 0, res.err
    line = next(ln for ln in res.out.splitlines() if "echo node1.example.com" in ln)
    assert "kickstarts/overlays/alpha.ks.j2:3" in line
