"""Dialogs of the fine-tune panel: compare base vs tuned on one prompt, pick a file.

``CompareScreen`` loads the base and the tuned model into two engines of their own (each
once per dialog, in a thread worker) and streams both greedy replies side by side through
``EngineLike.stream_chat``, so prompts and stop strings are exactly the chat's; nothing
slow runs on the UI thread, and closing the dialog cancels the generation between tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static
from textual.worker import get_current_worker

from slmchat.engine.generation.decode import CancelToken
from slmchat.engine.generation.prompting import ChatMessage
from slmchat.engine.generation.sampling import SamplingParams
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import first_line
from slmchat.tui.messages import CompareText

if TYPE_CHECKING:
    from slmchat.engine.session import EngineLike


def new_engine() -> EngineLike:
    """A second engine for one side of the dialog (the chat keeps its own model)."""
    from slmchat.engine.session import Engine

    return Engine()


class CompareScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen #cmp-box { width: 94%; height: 86%; border: thick $primary;
                             background: $surface; padding: 0 1; }
    CompareScreen #cmp-panes { height: 1fr; }
    CompareScreen .cmp-pane { width: 1fr; border: round $secondary; padding: 0 1; }
    CompareScreen #cmp-row { height: 1; margin: 1 0; }
    CompareScreen #cmp-row Button { width: auto; min-width: 6; margin: 0 0 0 1; }
    CompareScreen #cmp-prompt { width: 1fr; }
    CompareScreen .cmp-label { margin: 0 0 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, base: str, tuned: str, *, base_label: str | None = None,
                 tuned_label: str | None = None,
                 engine_factory: Callable[[], EngineLike] = new_engine,
                 max_new_tokens: int = 128) -> None:
        super().__init__()
        self.paths = {"base": base, "tuned": tuned}
        self.labels = {"base": base_label or Path(base).name or base,
                       "tuned": tuned_label or Path(tuned).name}
        self.engine_factory = engine_factory
        self.max_new_tokens = max_new_tokens
        self.cancel = CancelToken()
        self._engines: dict[str, EngineLike] = {}  # used by the worker thread only
        self.replies: dict[str, str] = {"base": "", "tuned": ""}

    def compose(self) -> ComposeResult:
        with Vertical(id="cmp-box"):
            yield Label("[b]Compare[/b]: one prompt, base and tuned model (greedy)")
            with Horizontal(id="cmp-row"):
                yield Input(placeholder="prompt", id="cmp-prompt", compact=True)
                yield Button("Send", id="cmp-send", variant="primary", compact=True)
                yield Button("Close", id="cmp-close", compact=True)
            with Horizontal(id="cmp-panes"):
                for which in ("base", "tuned"):
                    with VerticalScroll(classes="cmp-pane"):
                        yield Static(Text(f"{which}: {self.labels[which]}", style="bold"),
                                     classes="cmp-label")
                        yield Static("", id=f"cmp-{which}")

    def on_mount(self) -> None:
        self.query_one("#cmp-prompt", Input).focus()

    @on(Input.Submitted, "#cmp-prompt")
    @on(Button.Pressed, "#cmp-send")
    def send(self) -> None:
        prompt = self.query_one("#cmp-prompt", Input).value.strip()
        if not prompt:
            return
        self.cancel.cancel()
        self.cancel = CancelToken()
        for which in ("base", "tuned"):
            self._show(which, "loading…")
        self._generate(prompt, self.cancel)

    def _show(self, which: str, text: str) -> None:
        self.replies[which] = text
        self.query_one(f"#cmp-{which}", Static).update(Text(text))

    def on_compare_text(self, message: CompareText) -> None:
        self._show(message.which, message.text)

    @work(thread=True, exclusive=True, group="compare")
    def _generate(self, prompt: str, cancel: CancelToken) -> None:
        worker = get_current_worker()
        params = SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        messages = [ChatMessage("user", prompt)]
        for which in ("base", "tuned"):
            try:
                engine = self._engine(which)
                text = ""
                # Through the engine: the prompt's stop strings apply (a model without a
                # chat template stops at "\nUser:"), as in the chat.
                for chunk in engine.stream_chat(messages, params, cancel):
                    if worker.is_cancelled:
                        cancel.cancel()
                    if chunk.text:
                        text += chunk.text
                        self.post_message(CompareText(which, text))
                    if chunk.error:
                        text += f"\n[error: {chunk.error}]"
                self.post_message(CompareText(which, text or "(empty reply)"))
            except Exception as exc:
                self.post_message(CompareText(which, f"error: {first_line(exc)}"))

    def _engine(self, which: str) -> EngineLike:
        """The engine for one side, loaded once per dialog (in the worker thread)."""
        if which not in self._engines:
            engine = self.engine_factory()
            engine.load(ModelSpec(path=self.paths[which]))
            self._engines[which] = engine
        return self._engines[which]

    @on(Button.Pressed, "#cmp-close")
    def action_close(self) -> None:
        self.cancel.cancel()
        self.dismiss(None)


class TextFileTree(DirectoryTree):
    SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")

    def filter_paths(self, paths: Any) -> Any:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in self.SUFFIXES)]


class FilePickScreen(ModalScreen[str | None]):
    """Browse for a training file (or choose the highlighted folder)."""

    DEFAULT_CSS = """
    FilePickScreen { align: center middle; }
    FilePickScreen #pick-box { width: 70%; height: 70%; border: thick $primary;
                               background: $surface; }
    FilePickScreen #pick-row { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = start or Path.home()
        self.folder: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box"):
            yield Label("Pick a .txt, .md or .jsonl file (or a folder of them)")
            yield TextFileTree(str(self.start), id="pick-tree")
            with Horizontal(id="pick-row"):
                yield Button("Use folder", id="pick-folder")
                yield Button("Cancel", id="pick-cancel")

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def _dir(self, event: DirectoryTree.DirectorySelected) -> None:
        self.folder = event.path

    @on(Button.Pressed, "#pick-folder")
    def _use_folder(self) -> None:
        self.dismiss(str(self.folder) if self.folder else None)

    @on(Button.Pressed, "#pick-cancel")
    def action_close(self) -> None:
        self.dismiss(None)
