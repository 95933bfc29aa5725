"""A SelectionList whose toggles land on the option the user chose, however fast the keys come."""

from __future__ import annotations

from typing import Any

from textual.widgets import OptionList, SelectionList


class ToggleList(SelectionList[Any]):
    """Textual's SelectionList toggles the option highlighted when its OptionSelected message is *handled*, not
    the one it names. Space posts that message behind the keys already queued, so a burst such as `space down
    space` (a fast typist, a paste, tmux sending keys at once) toggled the second overlay twice and lost the
    first. Here each toggle takes the option index the message carries (the key's or the click's)."""

    def _on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        event.prevent_default()  # SelectionList's own handler (further up the MRO) would toggle the highlighted
        if 0 <= event.option_index < self.option_count:
            self.toggle(self.get_option_at_index(event.option_index))
