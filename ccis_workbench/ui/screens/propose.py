"""The propose screen: the evidence for the current profile's exact kickstart, tag and branch, a dry run by default,
a confirmed real commit, and the pull-request text.

Evidence and the proposal come from ccis_workbench.flows.propose, the same calls as the CLI's `propose` (real git,
never touching the user's checkout). Missing or stale evidence needs a second, separate confirmation (the CLI's
`--allow-missing`); only files that differ from the base commit are listed as committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Header, Input, Label, Static

from ccis_workbench.flows.propose import (
    ProposeRequest,
    commit_proposal,
    draft_proposal,
    dry_run_report,
    preview_evidence,
    require_evidence,
)
from ccis_workbench.flows.test import latest_build
from ccis_workbench.ui.messages import EvidenceGathered, ProposeDone
from ccis_workbench.ui.modals import ConfirmationModal
from ccis_workbench.ui.paths import catalog_label, in_catalog, relative_hint
from ccis_workbench.ui.widgets.panels import WorkbenchFooter, error_text

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.ui.engine import Choice, Workbench

STATUS_STYLE = {"ok": "green", "failing": "bold red", "stale": "bold yellow", "missing": "yellow",
                "unverified": "bold yellow"}


class SignatureChecked(Message):
    """The artifact folder's signature status: (text, style) for the propose screen's signature line."""

    def __init__(self, text: str, style: str) -> None:
        super().__init__()
        self.text = text
        self.style = style


def signature_status(artifacts: str) -> tuple[str, str]:
    """What the artifact folder's CHECKSUM.asc says, checked with gpgv as propose checks it (flows.verify)."""
    from ccis_workbench.flows.verify import SIGNATURE, check_signature

    if not artifacts:
        return "signature: no artifact folder (a signed build holds CHECKSUM.asc)", "dim"
    folder = Path(artifacts)
    if not folder.is_dir():
        return f"signature: {artifacts} is not a folder", "yellow"
    if not (folder / SIGNATURE).is_file():
        return "signature: UNSIGNED (no CHECKSUM.asc: the build had no signing key)", "yellow"
    good, said = check_signature(folder)
    return (f"signature: ✓ good: {said}", "green") if good else (f"signature: ✗ BAD: {said}", "bold red")


def verdict(item: Any) -> Text:
    """Whether a row's evidence verified: a build's manifest, CHECKSUM and boot-test report are cross-checked with
    the build's own files and signature (flows.propose); lint and diff are made here, from this kickstart."""
    from ccis_workbench.core.propose import FAILING, MISSING, OK, STALE

    if item.kind in ("lint", "diff"):
        return Text("made here", style="dim")
    if item.status in (OK, FAILING):
        return Text("✓ verified", style="green")
    if item.status == STALE:
        return Text("✗ other kickstart", style="yellow")
    if item.status == MISSING:
        return Text("—", style="dim")
    return Text("✗ NOT VERIFIED", style="bold red")


def saved_profile_name(ch: Choice) -> str | None:
    """The name of the saved profile the choice is, or None (never saved, saved outside profiles/, or modified)."""
    base = ch.base
    if base is None or ch.modified or not base.source or not str(base.source).startswith("profiles/"):
        return None
    return base.name


def latest_artifacts(profile: str, parent: Path = Path("artifacts")) -> str | None:
    """The newest build folder of *profile* under *parent* (it holds manifest.json), or None."""
    build = latest_build(profile, parent)
    return str(build) if build is not None else None


def gather(workbench: Workbench, ch: Choice, artifacts: str, tag: str, branch: str) -> tuple[Any, Any]:
    """(Evidence, Proposal preview) for the choice's exact kickstart (flows.propose.preview_evidence)."""
    return preview_evidence(workbench.composer, workbench.compose(ch), artifacts=artifacts or None, tag=tag,
                            branch=branch or None)


def run_propose(root: Path, profile: str, *, tag: str, branch: str, artifacts: str, dry_run: bool,
                allow_missing: bool, allow_rehearsal: bool = False) -> dict[str, Any]:
    """flows.propose, as the CLI's `propose` runs it: draft, refuse unmet evidence unless *allow_missing* (the
    user's second, separate confirmation), then a dry-run report or the commit."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer

    cat = Catalog.load(root)
    request = ProposeRequest(profile=profile, tag=tag or None, branch=branch or None, artifacts=artifacts or None)
    draft = draft_proposal(cat, Composer(cat), request)
    require_evidence(draft, allow_missing=allow_missing, allow_rehearsal=allow_rehearsal)
    if dry_run:
        return dry_run_report(draft)
    return commit_proposal(draft, request)


class ProposeScreen(Screen[None]):
    """Evidence (ok / failing / stale / missing), tag and branch, a dry run or a confirmed commit, the PR text."""

    BINDINGS = [
        Binding("escape", "close", "Back", tooltip="Back to the compose view"),
        Binding("ctrl+r,f5", "gather", "Evidence", tooltip="Gather the evidence again"),
        Binding("ctrl+d,f2", "dry_run", "Dry run", tooltip="Show what would be committed; write nothing"),
        Binding("ctrl+g,f3", "commit", "Propose…", tooltip="Create the branch and commit (asks first)"),
    ]

    def __init__(self, workbench: Workbench, ch: Choice, *, artifacts: str | None = None,
                 today: Callable[[], date] | None = None) -> None:
        super().__init__()
        from ccis_workbench.core.propose import default_branch, default_tag

        self.workbench = workbench
        self.choice = ch
        self.profile = saved_profile_name(ch)
        from ccis_workbench.flows.settings import Settings

        builds = Path(in_catalog(workbench.root, str(Settings.load().artifacts)))
        self.artifacts = artifacts or (latest_artifacts(self.profile, builds) if self.profile else None) or ""
        self.tag = default_tag(today() if today is not None else None)
        self.branch = default_branch(self.profile or ch.name)
        self.evidence: Any = None
        self.proposal: Any = None
        self.error: WorkbenchError | None = None
        self.busy = False
        self.last_report: dict[str, Any] = {}
        #: the user accepted rehearsal evidence for this proposal (a separate confirmation)
        self._rehearsal_allowed = False

    def compose(self) -> ComposeResult:
        yield Header()
        # two rows: at 80 columns, one row left each field a few characters
        with Horizontal(id="propose-bar", classes="run-bar -tight"):
            yield Label("Artifacts", classes="bar-label")
            yield Input(self.artifacts, id="propose-artifacts", compact=True,
                        placeholder=f"a build's artifact folder ({relative_hint(self.workbench.root)})")
            yield Button("Dry run", id="propose-dry", variant="primary", compact=True)
            yield Button("Propose…", id="propose-commit", variant="warning", compact=True)
        with Horizontal(id="propose-bar-2", classes="run-bar"):
            yield Label("Tag", classes="bar-label")
            yield Input(self.tag, id="propose-tag", compact=True)
            yield Label("Branch", classes="bar-label")
            yield Input(self.branch, id="propose-branch", compact=True)
        yield Static("", id="propose-head")
        yield Static("", id="propose-signature")
        table = DataTable(id="propose-evidence", cursor_type="row", zebra_stripes=True)
        table.add_column("Evidence", key="title")
        table.add_column("Status", key="status")
        table.add_column("Verified", key="verified")
        table.add_column("Detail", key="detail")
        table.add_column("sha256", key="sha")
        yield table
        with VerticalScroll(id="propose-scroll"):
            yield Static("", id="propose-text")
        yield Static("", id="propose-status", classes="run-status")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}"
        self.sub_title = f"propose: {self.profile or self.choice.name}"
        self.query_one("#propose-scroll").border_title = "Pull-request text"
        self.action_gather()

    # -- evidence ----------------------------------------------------------------------------------------------

    def _read_inputs(self) -> None:
        self.artifacts = in_catalog(self.workbench.root, self.query_one("#propose-artifacts", Input).value)
        self.tag = self.query_one("#propose-tag", Input).value.strip()
        self.branch = self.query_one("#propose-branch", Input).value.strip()

    def action_gather(self) -> None:
        self._read_inputs()
        self.busy = True
        self._status("gathering the evidence…")
        self.gather_evidence(self.artifacts, self.tag, self.branch)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_gather()

    @work(thread=True, exclusive=True, exit_on_error=False, group="propose-evidence", description="gather evidence")
    def gather_evidence(self, artifacts: str, tag: str, branch: str) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        self.post_message(SignatureChecked(*signature_status(artifacts)))
        try:
            evidence, proposal = gather(self.workbench, self.choice, artifacts, tag, branch)
        except WorkbenchError as exc:
            self.post_message(EvidenceGathered(error=exc))
            return
        self.post_message(EvidenceGathered(evidence, proposal))

    @on(EvidenceGathered)
    def _gathered(self, message: EvidenceGathered) -> None:
        self.busy = False
        self.evidence, self.proposal, self.error = message.evidence, message.proposal, message.error
        table = self.query_one("#propose-evidence", DataTable)
        table.clear()
        head = self.query_one("#propose-head", Static)
        if message.error is not None:
            e = message.error
            head.update(error_text("Cannot gather the evidence: ", e, sep="  "))
            self._status("fix the settings, then enter (or ctrl+r) gathers again")
            self.refresh_bindings()
            return
        ev, p = message.evidence, message.proposal
        for i in ev.items:
            # Text, never str: a DataTable renders a str cell as markup, and details carry paths and JSON values
            table.add_row(Text(i.title), Text(i.status, style=STATUS_STYLE.get(i.status, "")), verdict(i),
                          Text(i.detail), Text((i.sha256 or "")[:16]), key=i.kind)
        unmet = ev.unmet()
        head.update(Text.assemble(
            (f"{p.folder}/{p.kickstart_name}", "bold"), f"  kickstart sha256 {ev.kickstart_sha256[:16]}…  ",
            (f"{len(unmet)} item(s) missing, stale or unverified: the pull request will say so" if unmet else
             "all evidence matches this kickstart", "yellow" if unmet else "green")))
        self.query_one("#propose-text", Static).update(Text(p.pr_description()))
        if self.profile is None:
            self._status("propose needs a saved, unmodified profile in profiles/: save the choice (s) first")
        else:
            self._status(f"branch {self.branch or p.branch} · tag {self.tag}   f2 dry run · f3 propose (asks)")
        self.refresh_bindings()

    @on(SignatureChecked)
    def _signature_checked(self, message: SignatureChecked) -> None:
        self.query_one("#propose-signature", Static).update(Text(message.text, style=message.style))

    # -- running -----------------------------------------------------------------------------------------------

    def _can_run(self) -> bool:
        return self.profile is not None and self.evidence is not None and not self.busy

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dry run and Propose only for a saved profile whose evidence is shown (greyed while busy)."""
        if action in ("dry_run", "commit"):
            return True if self._can_run() else None
        return True

    def action_dry_run(self) -> None:
        if not self._explain():
            return
        self._read_inputs()
        self._start(True)

    @on(Button.Pressed, "#propose-dry")
    def _dry_pressed(self) -> None:
        self.action_dry_run()

    def action_commit(self) -> None:
        if not self._explain():
            return
        self._read_inputs()
        unmet = self.evidence.unmet()
        question = (f"Create branch {self.branch} in {self.workbench.root} with a commit proposing "
                    f"{self.profile} (tag {self.tag})? Your checkout is not changed.")

        rehearsal = self.evidence.rehearsal_items()

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify("nothing was written", title="Proposal not made")
            elif rehearsal and not self._rehearsal_allowed:
                self.app.push_screen(ConfirmationModal(
                    "The build or boot-test evidence comes from a REHEARSAL build (the workbench's offline "
                    "system), not from CentOS.\n\nPropose it labelled \"REHEARSAL, not a CentOS build\"? (the "
                    "CLI needs --allow-rehearsal for this)", yes="Propose as rehearsal", no="Cancel"), rehearsal_ok)
            elif unmet:
                # missing evidence is a separate, explicit choice (the CLI's --allow-missing)
                missing = "; ".join(f"{i.title} {i.status}" for i in unmet)
                self.app.push_screen(ConfirmationModal(
                    f"Not all evidence is there: {missing}.\n\nPropose anyway? The pull-request text and the "
                    "commit will say what is missing (the CLI needs --allow-missing for this).",
                    yes="Propose without it", no="Cancel"), allowed)
            else:
                self._start(False, allow_missing=False)

        def rehearsal_ok(yes: bool | None) -> None:
            if yes:
                self._rehearsal_allowed = True
                answered(True)
            else:
                self.notify("nothing was written", title="Proposal not made")

        def allowed(yes: bool | None) -> None:
            if yes:
                self._start(False, allow_missing=True)
            else:
                self.notify("nothing was written: build and boot-test this kickstart first", title="Proposal not made")

        self.app.push_screen(ConfirmationModal(question, yes="Commit", no="Cancel"), answered)

    @on(Button.Pressed, "#propose-commit")
    def _commit_pressed(self) -> None:
        self.action_commit()

    def _explain(self) -> bool:
        if self.profile is None:
            self.notify("propose commits a profile file: save the choice as a profile (s) first", title="Propose",
                        severity="warning")
            return False
        if self.evidence is None or self.busy:
            self.notify("the evidence is not gathered yet", title="Propose", severity="warning")
            return False
        return True

    def _start(self, dry_run: bool, *, allow_missing: bool = True) -> None:
        self.busy = True
        self.refresh_bindings()
        self._status("dry run…" if dry_run else "committing the proposal…")
        self.run_proposal(dry_run, self.tag, self.branch, self.artifacts, allow_missing)

    @work(thread=True, exclusive=True, exit_on_error=False, group="propose", description="propose")
    def run_proposal(self, dry_run: bool, tag: str, branch: str, artifacts: str, allow_missing: bool) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        assert self.profile is not None
        try:
            report = run_propose(self.workbench.root, self.profile, tag=tag, branch=branch, artifacts=artifacts,
                                 dry_run=dry_run, allow_missing=allow_missing,
                                 allow_rehearsal=dry_run or self._rehearsal_allowed)
            pr_text = ""
            if report.get("pull_request"):
                pr_text = Path(report["pull_request"]).read_text(encoding="utf-8")
            elif self.proposal is not None:
                pr_text = self.proposal.pr_description()
        except WorkbenchError as exc:
            self.post_message(ProposeDone(dry_run, error=exc))
            return
        self.post_message(ProposeDone(dry_run, report, pr_text))

    @on(ProposeDone)
    def _done(self, message: ProposeDone) -> None:
        self.busy = False
        self.refresh_bindings()
        head = self.query_one("#propose-head", Static)
        if message.error is not None:
            e = message.error
            head.update(error_text("✗ ", e, sep="  "))
            self.notify(e.message, title=e.title, severity="error")
            self._status("nothing was written")
            return
        r = self.last_report = message.report
        files = ", ".join(f["path"] for f in r.get("files", []))
        if message.dry_run:
            head.update(Text.assemble(("Dry run: ", "bold"), f"would create branch {r.get('branch')} on "
                                      f"{str(r.get('base', ''))[:12]} with {r.get('kickstart')}",
                                      f" and {files}" if files else "", ("  (nothing written)", "dim")))
            self._status("dry run done: nothing written · f3 proposes for real (asks first)")
            self.notify(f"branch {r.get('branch')} would be created", title="Dry run")
        else:
            patches = r.get("patches") or []
            head.update(Text.assemble(("✓ Proposed: ", "bold green"), f"branch {r.get('branch')} at "
                                      f"{str(r.get('commit', ''))[:12]}; {len(patches)} patch(es); "
                                      f"PR text {r.get('pull_request')}"))
            self._status(f"committed on {r.get('branch')} (your checkout is unchanged)")
            self.notify(f"branch {r.get('branch')} created", title="Proposal committed")
        text = Text(message.pr_text)
        if message.dry_run and r.get("commit_message"):
            text = Text.assemble(("Commit message:\n", "bold"), r["commit_message"], ("\nPull-request text:\n",
                                                                                     "bold"), message.pr_text)
        self.query_one("#propose-text", Static).update(text)

    def _status(self, text: str) -> None:
        self.query_one("#propose-status", Static).update(Text(text))  # branch and tag are typed: no markup

    def action_close(self) -> None:
        self.app.pop_screen()
