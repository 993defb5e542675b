"""The key footer, fitted to the terminal: keys that do not fit are left out whole.

Textual's footer lays every shown key in one row and cuts the row at the right edge, so at
80 columns a focused widget's keys pushed the screen's off mid-word ("^t Fine-t"). This
one adds keys in the footer's order (the focused widget's first, then the screen's, then
the app's) while they fit, always keeps the quit key, and the palette key (Ctrl+P lists
every command) stays docked on the right.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEEP_ACTIONS = ("quit", "app.quit")


class FittedFooter(Footer):
    """``Footer`` without binding groups (the app has none), fitted to its width."""

    def __init__(self, *, compact: bool = False, id: str | None = None) -> None:
        super().__init__(compact=compact, id=id)
        self._fitted_width = 0

    def key_width(self, binding: Binding, palette: bool = False) -> int:
        """Cells a key takes (padding and margins of Textual's footer CSS included)."""
        key = cell_len(self.app.get_key_display(binding))
        desc = cell_len(binding.description)
        if self.compact:  # key, " description", one cell of margin (the palette: border)
            return key + (1 + desc if desc else 0) + 1
        # " key ", "description ", and the palette's border
        return 1 + key + 1 + (desc + 1 if desc else 0) + (1 if palette else 0)

    def fitted(self) -> tuple[list[tuple[Binding, bool, str]], tuple[Binding, bool, str] | None]:
        """The keys to show, in order, and the palette key (None: not shown)."""
        active = self.screen.active_bindings
        keys: dict[str, tuple[Binding, bool, str]] = {}
        for _node, binding, enabled, tooltip in active.values():
            if binding.show:
                keys.setdefault(binding.action, (binding, enabled, tooltip))
        palette = None
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = active.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                palette = (found.binding, found.enabled, found.tooltip)
        items = list(keys.values())
        room = self.size.width
        if room <= 0:  # not laid out yet: everything, as Textual's footer
            return items, palette
        if palette is not None:
            room -= self.key_width(palette[0], palette=True)
        widths = [self.key_width(b) for b, _, _ in items]
        chosen = {i for i, (b, _, _) in enumerate(items) if b.action in KEEP_ACTIONS}
        used = sum(widths[i] for i in chosen)
        for i, width in enumerate(widths):
            if i not in chosen and used + width <= room:
                chosen.add(i)
                used += width
        return [item for i, item in enumerate(items) if i in chosen], palette

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        self._fitted_width = self.size.width
        keys, palette = self.fitted()
        for binding, enabled, tooltip in keys:
            yield FooterKey(binding.key, self.app.get_key_display(binding),
                            binding.description, binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)
        if palette is not None:
            binding, enabled, _ = palette
            yield FooterKey(binding.key, self.app.get_key_display(binding),
                            binding.description, binding.action, classes="-command-palette",
                            disabled=not enabled,
                            tooltip=binding.tooltip or binding.description)

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and event.size.width != self._fitted_width:
            self.call_after_refresh(self.recompose)
