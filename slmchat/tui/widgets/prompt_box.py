"""Multi-line prompt: Enter sends, Ctrl+J / Shift+Enter insert a newline, Ctrl+E opens
the text in $EDITOR (screens/editor.py).

Up on the first line and Down on the last line walk through the user's earlier
prompts (like a shell); the draft being typed is kept and comes back at the end.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from slmchat.i18n import t

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter")
EDITOR_KEY = "ctrl+e"  # instead of TextArea's end-of-line (End does that too)


class PromptBox(TextArea):
    """The text box at the bottom of the chat."""

    class Submitted(Message):
        def __init__(self, box: PromptBox, text: str) -> None:
            super().__init__()
            self.box = box
            self.text = text

    class EditorRequested(Message):
        """Ctrl+E: edit the prompt in $VISUAL / $EDITOR."""

        def __init__(self, box: PromptBox) -> None:
            super().__init__()
            self.box = box

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder=t("prompt.placeholder"))
        self.prompt_history: list[str] = []
        self._history_pos: int | None = None  # index into history while browsing
        self._draft = ""
        self.drafts: dict[int | None, str] = {}  # unsent text per conversation

    def set_history(self, prompts: list[str]) -> None:
        self.prompt_history = list(prompts)
        self._history_pos = None

    def remember(self, text: str) -> None:
        if text and (not self.prompt_history or self.prompt_history[-1] != text):
            self.prompt_history.append(text)
        self._history_pos = None

    def load_draft(self, text: str) -> None:
        """Another conversation's unsent text (or nothing), history browsing ended."""
        self._history_pos = None
        self._draft = ""
        self.set_text(text)

    def switch_draft(self, here: int | None, going_to: int | None, keep: bool = True) -> None:
        """Keep the text as conversation ``here``'s draft (``keep``: False while it is an
        edit's, which belongs to the message being edited) and show ``going_to``'s (None:
        the new chat), so unsent text does not follow you into another conversation."""
        if going_to == here:
            return
        if keep:
            if self.text.strip():
                self.drafts[here] = self.text
            else:
                self.drafts.pop(here, None)
        self.load_draft(self.drafts.pop(going_to, ""))

    def set_text(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key == EDITOR_KEY:
            event.stop()
            event.prevent_default()
            self.post_message(self.EditorRequested(self))
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            start, end = self.selection
            self._replace_via_keyboard("\n", start, end)
            return
        await super()._on_key(event)

    # --- history (Up on the first line, Down on the last) ---

    def action_cursor_up(self, select: bool = False) -> None:
        if select or self.cursor_location[0] > 0 or not self.prompt_history:
            super().action_cursor_up(select)
            return
        if self._history_pos is None:
            self._draft = self.text
            self._history_pos = len(self.prompt_history)
        if self._history_pos > 0:
            self._history_pos -= 1
            self.set_text(self.prompt_history[self._history_pos])

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if select or self._history_pos is None or self.cursor_location[0] < last_row:
            super().action_cursor_down(select)
            return
        self._history_pos += 1
        if self._history_pos >= len(self.prompt_history):
            self._history_pos = None
            self.set_text(self._draft)
        else:
            self.set_text(self.prompt_history[self._history_pos])
