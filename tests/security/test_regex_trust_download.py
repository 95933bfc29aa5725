"""Issue 19, the last three holes: catalog regular expressions matched in linear time (RE2), checks derived from a
changed overlay or target labelled "from this branch", and `verify URL`'s download kept to its folder and its size.

Hostile inputs are written into a private catalog (tmp_path); the CLI and the matcher run in subprocesses with a
time limit and an address-space limit, so a hang or a blow-up fails the test instead of stalling the suite."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.linear_regex import fullmatch, linear_problem, search
from ccis_workbench.core.schema import compile_catalog_regex

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1536 * 1024 * 1024
TIME_LIMIT = 60  # seconds; Python's re needs hours for the searches below, RE2 well under one


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _bounded(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, timeout=TIME_LIMIT, preexec_fn=_limit_memory, check=False
    )


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _bounded([sys.executable, "-m", "ccis_workbench", "--catalog", str(root), *args], root)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


def expect_refusal(root: Path, where: str, words: str, *args: str) -> str:
    """Exit 2, *where* (file:line) on the first line of the message, *words* in it, no traceback, nothing written."""
    before = _tree(root.parent)
    res = run_cli(root, *args)
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr
    assert where in res.stderr.splitlines()[0], res.stderr
    assert words.lower() in res.stderr.lower(), res.stderr
    assert _tree(root.parent) == before, "the refusal changed files"
    return res.stderr


# -- 1. catalog regular expressions run in linear time ----------------------------------------------------------

POLYNOMIAL = ".*a.*b.*c.*d.*e"  # no nested repetition, so the static check lets it through; Python's re: n**5


def _overlay_check(root: Path, output: str) -> Path:
    path = root / "kickstarts/overlays/beta.yaml"
    path.write_text(
        "name: beta\ntitle: Beta\nchecks:\n  - id: beta.slow\n    description: slow\n"
        f"    command: 'cat /var/log/console'\n    output: '{output}'\n"
    )
    return path


def test_polynomial_check_output_is_matched_in_linear_time(mini_catalog: Path, tmp_path: Path) -> None:
    """The catalog's check (loaded as the CLI loads it) judged against one megabyte of console text on one line:
    the answer is right both ways and comes within the time limit (Python's re would backtrack for hours)."""
    _overlay_check(mini_catalog, POLYNOMIAL)
    assert run_cli(mini_catalog, "list", "overlays").returncode == 0  # a valid pattern: accepted
    script = tmp_path / "judge.py"
    script.write_text(
        textwrap.dedent(f"""\
        from ccis_workbench.core.catalog import Catalog
        from ccis_workbench.core.testspec import evaluate
        cat = Catalog.load({str(mini_catalog)!r})
        check = next(c for c in cat.overlays["beta"].checks if c.id == "beta.slow")
        text = "abcd" * 262144  # 1 MiB, one line, no e
        print(evaluate(check, 0, text)[0], evaluate(check, 0, text + "e")[0], evaluate(check, 0, "e" + text)[0])
        """)
    )
    res = _bounded([sys.executable, str(script)], REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["False", "True", "False"]


def test_polynomial_variable_pattern_is_matched_in_linear_time(mini_catalog: Path) -> None:
    """A variable pattern of the same shape against a 200,000-character value given by a profile: the CLI refuses
    the value (it has no e) with the profile's file:line, in bounded time."""
    (mini_catalog / "kickstarts/overlays/beta.yaml").write_text(
        f"name: beta\ntitle: Beta\nvariables:\n  motd:\n    type: str\n    pattern: '{POLYNOMIAL}'\n"
    )
    (mini_catalog / "profiles/p.yaml").write_text(
        "name: p\nrelease: centos-stream-9\ntarget: openstack\noverlays: [beta]\nvariables:\n  motd: "
        + "abcd" * 50_000
        + "\n"
    )
    out = mini_catalog.parent / "out.ks"
    expect_refusal(mini_catalog, "profiles/p.yaml:6", "motd", "render", "p", "-o", str(out))
    assert not out.exists()
    (mini_catalog / "profiles/p.yaml").write_text(
        "name: p\nrelease: centos-stream-9\ntarget: openstack\noverlays: [beta]\nvariables:\n  motd: "
        + "abcd" * 50_000
        + "e\n"
    )
    res = run_cli(mini_catalog, "render", "p", "-o", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.exists()


@pytest.mark.parametrize(
    ("output", "words"),
    [("(?=.*x)y", "lookahead"), ("(?<!x)y", "lookbehind"), ("x(?!y)", "negative lookahead")],
    ids=["lookahead", "lookbehind", "negative-lookahead"],
)
def test_unsupported_check_output_is_a_file_line_error(mini_catalog: Path, output: str, words: str) -> None:
    _overlay_check(mini_catalog, output)
    expect_refusal(mini_catalog, "kickstarts/overlays/beta.yaml:4", words, "list", "overlays")


def test_unsupported_variable_pattern_is_a_file_line_error(mini_catalog: Path) -> None:
    (mini_catalog / "kickstarts/overlays/beta.yaml").write_text(
        "name: beta\ntitle: Beta\nvariables:\n  motd:\n    type: str\n    pattern: '(?<=a)b'\n"
    )
    (mini_catalog / "profiles/p.yaml").write_text(
        "name: p\nrelease: centos-stream-9\ntarget: openstack\noverlays: [beta]\nvariables:\n  motd: ab\n"
    )
    expect_refusal(mini_catalog, "kickstarts/overlays/beta.yaml:6", "linear time", "render", "p")


def test_unsupported_testspec_output_is_a_file_line_error(mini_catalog: Path) -> None:
    spec = mini_catalog / "kickstarts/testspec.yaml"
    lines = (REPO / "kickstarts/testspec.yaml").read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("output:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = indent + "output: '^(?=root)root'"
    spec.write_text("\n".join(lines) + "\n")
    stderr = expect_refusal(mini_catalog, "kickstarts/testspec.yaml:", "lookahead", "spec", "p")
    item = max(i for i in range(at) if lines[i].lstrip().startswith("- "))  # a check is located at its item
    assert f"kickstarts/testspec.yaml:{item + 1}:" in stderr.splitlines()[0], stderr


def test_linear_matcher_semantics() -> None:
    """What the catalog relies on: (?m) lines by default, inline flags, fullmatch, and the refusals by name."""
    assert search("^b$", "a\nb\nc") and not search("^b$", "a\nb\nc", multiline=False)
    assert search("(?s)x.*y", "x\n\ny") and not search("x.*y", "x\ny")
    assert search("(?i)^PERMIT", "permit yes")
    assert fullmatch("[a-z]+", "abc") and not fullmatch("[a-z]+", "abc1")
    assert "back reference" in (linear_problem("(a)\\1") or "")
    with pytest.raises(CatalogError, match="linear time") as err:
        compile_catalog_regex("(?=a)a", "check c: output", "f.yaml", 9)
    assert (err.value.location.file, err.value.location.line) == ("f.yaml", 9)


def test_shipped_catalog_patterns_all_run_in_linear_time() -> None:
    """Every output pattern the repository ships loads (the lookaheads of aws and gce were rewritten)."""
    from ccis_workbench.core.catalog import Catalog

    cat = Catalog.load(REPO)
    patterns = [c.output for t in cat.targets.values() for c in t.checks if c.output]
    patterns += [c.output for o in cat.overlays.values() for c in o.checks if c.output]
    assert patterns and all(linear_problem(p) is None for p in patterns)


# -- 2. derived checks from a changed overlay are labelled "from this branch" -----------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def package_branch(mini_catalog: Path, tmp_path: Path) -> Path:
    """The SIG's repository (the test catalog with the shipped testspec.yaml, on main) and a contributor's clone
    whose branch changes one thing: overlay alpha's package list (htop -> htop, tmux)."""
    spec = (REPO / "kickstarts/testspec.yaml").read_text()
    (mini_catalog / "kickstarts/testspec.yaml").write_text(spec)
    _git(mini_catalog, "init", "-q", "-b", "main")
    _git(mini_catalog, "add", "-A")
    _git(mini_catalog, "-c", "user.name=SIG", "-c", "user.email=sig@example.org", "commit", "-q", "-m", "catalog")
    dest = tmp_path / "contrib"
    subprocess.run(["git", "clone", "-q", str(mini_catalog), str(dest)], check=True, capture_output=True)
    _git(dest, "checkout", "-q", "-b", "feature")
    alpha = dest / "kickstarts/overlays/alpha.yaml"
    alpha.write_text(alpha.read_text().replace("packages: [htop]", "packages: [htop, tmux]"))
    _git(dest, "-c", "user.name=C", "-c", "user.email=c@example.org", "commit", "-q", "-am", "alpha: tmux")
    return dest


def test_derived_check_from_a_changed_overlay_is_from_this_branch(package_branch: Path) -> None:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.testspec import load_spec, select_checks
    from ccis_workbench.flows.trust import FROM_BRANCH, branch_changes, checks_from_branch, describe_checks

    changes = branch_changes(package_branch)
    assert changes.files == {Path("kickstarts/overlays/alpha.yaml")}  # testspec.yaml is untouched
    cat = Catalog.load(package_branch)
    plan = select_checks(load_spec(package_branch), Composer(cat).compose(cat.load_profile("p")))
    derived = {s.check.id: s for s in plan.selected if s.group == "derived"}
    installed = derived["derived.packages-installed"]
    assert "tmux" in installed.items and "kickstarts/overlays/alpha.yaml" in installed.sources
    assert installed.check.origin.file == "kickstarts/testspec.yaml"  # defined by the spec, items by the overlay
    ours = {s.check.id for s in checks_from_branch(plan, changes)}
    assert "derived.packages-installed" in ours
    assert "derived.services-disabled" in ours  # alpha disables chronyd: its file changed, its values count
    # the derived checks whose items come only from unchanged files are not the contributor's
    assert "derived.root-locked" not in ours and "derived.selinux" not in ours
    assert "derived.packages-removed" not in ours  # -rsync is beta's, -tar the profile's: neither changed
    text = "\n".join(describe_checks(checks_from_branch(plan, changes)))
    head = next(ln for ln in text.splitlines() if ln.startswith("  derived.packages-installed  ["))
    assert "items from " in head and "kickstarts/overlays/alpha.yaml" in head and head.endswith(f"{FROM_BRANCH}]")


def test_boot_test_plan_names_derived_checks_of_a_changed_overlay(package_branch: Path, tmp_path: Path) -> None:
    """What the reviewer sees: `boot-test --plan` (runs nothing) lists the derived package check among the check
    commands from this branch, with the overlay that gave its items."""
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    res = run_cli(package_branch, "boot-test", str(image), "--profile", "p", "--plan")
    assert res.returncode == 0, res.stderr[-3000:]
    note = res.stderr[res.stderr.index("come from files changed on this branch") :]
    assert "derived.packages-installed" in note and "kickstarts/overlays/alpha.yaml" in note, note
    assert "derived.root-locked" not in note, note


# -- 3. `verify URL` downloads: plain names, capped sizes, http(s) redirects only, new files only ---------------


class _Hostile:
    """A hostile HTTP server on 127.0.0.1: *routes* maps a path to (status, headers, body); a body that is a
    callable writes to the socket itself (an endless body)."""

    def __init__(self, routes: dict) -> None:
        import http.server
        import threading

        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, b"not here\n"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if not callable(body):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    body(self.wfile) if callable(body) else self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.asked: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pub/"

    def __enter__(self) -> _Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _endless(out) -> None:
    block = b"x" * 65536
    while True:
        out.write(block)


def _checksum(*names: str) -> bytes:
    return "".join(f"SHA256 ({n}) = {'0' * 64}\n" for n in names).encode()


def _verify_url(url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`verify URL` in a subprocess (time and memory bounded) whose temporary folders go to a folder of its own."""
    import os

    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    res = subprocess.run(
        [sys.executable, "-m", "ccis_workbench", "verify", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=TIME_LIMIT,
        preexec_fn=_limit_memory,
        check=False,
    )
    return res, scratch


def _refused(res: subprocess.CompletedProcess[str], words: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr
    assert words.lower() in res.stderr.lower(), res.stderr


@pytest.mark.parametrize(
    "name",
    ["../evil", "../../tmp/evil", "sub/../../evil", "evil\x1b[2Jx"],
    ids=["dotdot", "dotdot-deep", "folder-dotdot", "control"],
)
def test_verify_url_refuses_names_outside_the_folder(tmp_path: Path, name: str) -> None:
    routes = {"/pub/CHECKSUM": (200, {}, _checksum("disk.qcow2", name)), "/pub/disk.qcow2": (200, {}, b"disk")}
    with _Hostile(routes) as srv:
        res, scratch = _verify_url(srv.url, tmp_path)
    _refused(res, "CHECKSUM")
    assert not any(p for p in srv.asked if "evil" in p), "a hostile name is never even asked for"
    assert not list(scratch.iterdir()), "the temporary folder is gone"
    assert not list(tmp_path.rglob("evil*")), "nothing written outside the folder"


def test_verify_url_stops_an_endless_checksum(tmp_path: Path) -> None:
    with _Hostile({"/pub/CHECKSUM": (200, {}, _endless)}) as srv:
        res, scratch = _verify_url(srv.url, tmp_path)
    _refused(res, "Download too large")
    assert "over the limit of 1048576 bytes" in res.stderr
    assert not list(scratch.iterdir())


def test_verify_url_refuses_a_declared_size_over_the_limit_before_reading(tmp_path: Path) -> None:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.verify import fetch

    routes = {"/pub/CHECKSUM": (200, {"Content-Length": str(10 << 30)}, _endless)}
    with _Hostile(routes) as srv, pytest.raises(WorkbenchError, match="declares 10737418240 bytes"):
        fetch(srv.url, tmp_path / "dest")
    assert not (tmp_path / "dest/CHECKSUM").exists()


def test_verify_url_caps_an_endless_image(tmp_path: Path) -> None:
    """An image is capped at the stated limit (max_image_bytes, 64 GiB by default; 1 MiB here): the endless body
    is cut there, the error names it and the part is removed; the evidence next to it was kept 0600."""
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.verify import MAX_IMAGE_BYTES, download_limit, fetch

    assert download_limit("disk.qcow2") == MAX_IMAGE_BYTES and download_limit("CHECKSUM") == 1 << 20
    routes = {
        "/pub/CHECKSUM": (200, {}, _checksum("a.provenance.intoto.json", "disk.qcow2")),
        "/pub/a.provenance.intoto.json": (200, {}, b"{}"),
        "/pub/disk.qcow2": (200, {}, _endless),
    }
    dest = tmp_path / "dest"
    with _Hostile(routes) as srv, pytest.raises(WorkbenchError, match="goes on past 1048576 bytes"):
        fetch(srv.url, dest, max_image_bytes=1 << 20)
    assert not (dest / "disk.qcow2").exists()
    assert (dest / "CHECKSUM").stat().st_mode & 0o777 == 0o600
    assert (dest / "a.provenance.intoto.json").stat().st_mode & 0o777 == 0o600
    assert dest.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("where", ["CHECKSUM", "disk.qcow2"])
def test_verify_url_never_follows_a_redirect_to_file(tmp_path: Path, where: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("SHA256 (secret) = " + "1" * 64 + "\n")
    routes = {"/pub/CHECKSUM": (200, {}, _checksum("disk.qcow2"))}  # the image's redirect, or CHECKSUM's own
    routes[f"/pub/{where}"] = (302, {"Location": secret.as_uri()}, b"")
    with _Hostile(routes) as srv:
        res, scratch = _verify_url(srv.url, tmp_path)
    _refused(res, "Bad redirect")
    assert "only http(s) is followed" in res.stderr
    assert not list(scratch.iterdir())


def test_verify_url_redirect_to_ftp_is_refused(tmp_path: Path) -> None:
    with _Hostile({"/pub/CHECKSUM": (301, {"Location": "ftp://127.0.0.1/CHECKSUM"}, b"")}) as srv:
        res, _ = _verify_url(srv.url, tmp_path)
    _refused(res, "Bad redirect")


def test_fetch_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.verify import fetch

    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "CHECKSUM").symlink_to(victim)
    with (
        _Hostile({"/pub/CHECKSUM": (200, {}, _checksum("disk.qcow2"))}) as srv,
        pytest.raises(WorkbenchError, match="exists already"),
    ):
        fetch(srv.url, dest)
    assert victim.read_text() == "keep me\n"
