"""Modal screens that return typed results (posting's ConfirmationModal idea), and the help screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ConfirmationModal(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True for yes."""

    BINDINGS = [Binding("escape", "answer(False)", "Cancel"), Binding("y", "answer(True)", "Yes"),
                Binding("n", "answer(False)", "No")]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="warning", id="yes")
                yield Button(self.no, variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


@dataclass
class SaveRequest:
    """What the save dialog returns: the new profile's name and description."""

    name: str
    description: str


class SaveProfileModal(ModalScreen[SaveRequest | None]):
    """Ask for the new profile's name (validated by the caller) and description."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, name: str, description: str = "", error: str = "") -> None:
        super().__init__()
        self.initial_name = name
        self.initial_description = description
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Save the current choice as a new profile (profiles/NAME.yaml)")
            yield Label("Name")
            yield Input(self.initial_name, id="name", placeholder="lower-case-name")
            yield Label("Description")
            yield Input(self.initial_description, id="description", placeholder="what this image is for")
            yield Static(self.error, id="save-error", classes="error-text")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self.dismiss(SaveRequest(self.query_one("#name", Input).value.strip(),
                                 self.query_one("#description", Input).value.strip()))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class OpenProfileModal(ModalScreen[str | None]):
    """Pick a profile by name (typing filters the list: type-ahead), or type a path to a profile YAML."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Open a profile: type to filter, enter opens (or type a path to a profile YAML)")
            yield Input(placeholder="name filter, or path/to/profile.yaml", id="path")
            yield OptionList(*[Option(n, id=n) for n in self.names], id="profiles")

    def on_mount(self) -> None:
        self.query_one("#profiles", OptionList).focus()

    def matching(self, text: str) -> list[str]:
        """The names holding every word of *text* (in any order, case-insensitive)."""
        words = text.lower().split()
        return [n for n in self.names if all(w in n.lower() for w in words)]

    def on_key(self, event: events.Key) -> None:
        """A letter typed on the list goes to the filter (type-ahead); down from the filter goes to the list."""
        field = self.query_one("#path", Input)
        options = self.query_one("#profiles", OptionList)
        if self.focused is options and event.character and event.character.isprintable() and \
                event.key not in ("enter", "space"):
            field.focus()
            field.insert_text_at_cursor(event.character)
            event.stop()
        elif self.focused is field and event.key == "down" and options.option_count:
            options.focus()
            options.highlighted = 0
            event.stop()

    @on(Input.Changed, "#path")
    def _filter(self, event: Input.Changed) -> None:
        options = self.query_one("#profiles", OptionList)
        options.clear_options()
        shown = self.matching(event.value)
        options.add_options([Option(n, id=n) for n in shown])
        if shown:
            options.highlighted = 0

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted)
    def _path(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.dismiss(None)
            return
        looks_like_path = "/" in text or text.endswith((".yaml", ".yml"))
        shown = self.matching(text)
        if not looks_like_path and shown:
            exact = [n for n in shown if n == text]
            self.dismiss(exact[0] if exact else shown[0])
        else:
            self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathModal(ModalScreen[str | None]):
    """Ask for a file path (the kickstart to diff against)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "", placeholder: str = "/path/to/file.ks") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self.prompt)
            yield Input(self.value, id="path", placeholder=self.placeholder)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
# CCIS Workbench

Pick a **release**, a **target** and **overlays** on the left; set the variables. The merged kickstart on the
right updates as you choose. Overlays that cannot be added say why (greyed out).

| Key | What it does |
|-----|--------------|
| `tab` / `shift+tab` | move between the controls |
| `space` / `enter` | toggle an overlay, open a list |
| `p` `d` `l` `y` | Preview, Diff, Lint, Profile YAML tabs |
| `v` | provenance: which layer file:line produced each line (`!` marks an override) |
| `m` / `f` | diff mode (baseline, target alone, saved profile, file, git HEAD) / diff against a kickstart file |
| `enter` on a lint finding | jump to its line in the preview |
| `/` / `]` `[` | find text in the preview / next, previous line a target, overlay or the profile made |
| `n` / `o` / `s` | new composition / open a profile / save the choice as a new profile |
| `r` | review an overlay across every release × target |
| `ctrl+r` / `f5` | reload the catalog from disk (after fixing a file) |
| `b` / `x` | build / boot-test screens (they say why when libvirt is not usable) |
| `u` | propose the profile upstream with its evidence |
| `ctrl+t` | light / dark theme |
| `ctrl+p` | command palette |
| `escape` | back to the preview, close a dialog |
| `?` | this help |
| `q` / `ctrl+q` | quit (asks first if a build or boot test runs, or the composition is not saved) |

**Diff baseline**: "baseline" is the release's SIG baseline kickstart alone (what every image is before a target
or overlay touches it); "target alone" is the same release + target with no overlays and default variables.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and the flow, in one page."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # imported when help opens: markdown-it costs start-up time

        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
