"""A tool call in a reply, as a collapsible block: the tool, its arguments and what
became of the call in the title; the arguments and the result inside."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.markup import escape
from textual.widgets import Collapsible, Static

from slmchat.i18n import t

TITLE_ARGS = 60  # characters of the arguments shown in the title
TITLE_RESULT = 60


def _short(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def call_label(call: dict[str, Any]) -> str:
    """"add {"a": 2, "b": 3}": the tool and its arguments on one short line."""
    args = json.dumps(call.get("arguments") or {}, ensure_ascii=False)
    return f"{call.get('name')} {_short(args, TITLE_ARGS)}"


def call_state(call: dict[str, Any]) -> str:
    """What became of the call, in words."""
    if call.get("consent") == "denied":
        return t("tool.state_denied")
    if "result" in call:
        key = "tool.state_error" if call.get("is_error") else "tool.state_result"
        return t(key, text=_short(str(call["result"]), TITLE_RESULT))
    if call.get("consent") in ("once", "always"):
        return t("tool.state_running")
    return t("tool.state_asked")


def block_title(call: dict[str, Any]) -> str:
    """The block's title, markup escaped: arguments and results are the model's and the
    tool's text ("[/notes]" is a path, not a closing tag)."""
    return escape(t("tool.block_title", call=call_label(call), server=call.get("server") or "?",
                    state=call_state(call)))


class ToolCallBlock(Collapsible):
    """Collapsed by default: the title says enough to follow the conversation."""

    DEFAULT_CSS = """
    ToolCallBlock { margin: 0 0 0 0; padding: 0; border-top: none; background: $boost; }
    ToolCallBlock .tool-args, ToolCallBlock .tool-result { padding: 0 1; }
    ToolCallBlock .tool-result.-error { color: $error; }
    """

    def __init__(self, call: dict[str, Any]) -> None:
        self._args = Static(classes="tool-args")
        self._result = Static(classes="tool-result")
        super().__init__(self._args, self._result, title=block_title(call), collapsed=True,
                         classes="tool-call")
        self.call = call
        self._fill()

    def _fill(self) -> None:
        call = self.call
        args = json.dumps(call.get("arguments") or {}, indent=2, ensure_ascii=False)
        self._args.update(Text(t("tool.arguments", args=args)))
        if "result" in call:
            label = "tool.error" if call.get("is_error") else "tool.result"
            self._result.update(Text(t(label, text=str(call["result"]))))
        elif call.get("consent") == "denied":
            self._result.update(Text(t("tool.not_run")))
        else:
            self._result.update("")
        self._result.set_class(bool(call.get("is_error")), "-error")

    def update_call(self, call: dict[str, Any]) -> None:
        self.call = call
        self.title = block_title(call)
        self._fill()
