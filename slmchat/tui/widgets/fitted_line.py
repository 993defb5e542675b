"""One line of parts that never cuts a figure in half: what does not fit is left out
whole, least important first (the status bar, a message's header)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

# (text with its leading separator, priority): 0 is always shown, higher goes first.
Part = tuple[Text, int]


def fit_parts(parts: Sequence[Part], width: int | None) -> Text:
    keep = list(range(len(parts)))
    if width is not None:
        used = sum(parts[i][0].cell_len for i in keep)
        for i in sorted(keep, key=lambda i: -parts[i][1]):
            if used <= width:
                break
            if parts[i][1] > 0:
                keep.remove(i)
                used -= parts[i][0].cell_len
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    for i in keep:
        line.append_text(parts[i][0])
    return line


def part(text: str, priority: int, style: str = "") -> Part:
    return Text(text, style=style), priority


class FittedLine(Static):
    """A one-line Static whose parts are fitted to its width on every render."""

    def __init__(self, parts: Sequence[Part] = (), *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.parts = list(parts)

    def set_parts(self, parts: Sequence[Part]) -> None:
        self.parts = list(parts)
        self.refresh()

    def render(self) -> Text:
        return fit_parts(self.parts, self.content_size.width or None)
