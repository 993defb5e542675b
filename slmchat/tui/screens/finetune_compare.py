"""Dialogs of the fine-tune panel: compare base vs tuned on one prompt, pick a file.

``CompareScreen`` loads the base and the tuned model in a thread worker (each once per
dialog) and streams both greedy replies side by side; nothing slow runs on the UI
thread, and closing the dialog cancels the generation between tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static
from textual.worker import get_current_worker

from slmchat.engine.generation.decode import CancelToken


class CompareScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen #cmp-box { width: 90%; height: 80%; border: thick $primary;
                             background: $surface; padding: 0 1; }
    CompareScreen #cmp-panes { height: 1fr; }
    CompareScreen .cmp-pane { width: 1fr; border: round $secondary; padding: 0 1; }
    CompareScreen #cmp-row { height: auto; }
    CompareScreen #cmp-prompt { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, base: str, tuned: str, settings: Any = None,
                 max_new_tokens: int = 128) -> None:
        super().__init__()
        self.base, self.tuned, self.settings = base, tuned, settings
        self.max_new_tokens = max_new_tokens
        self.cancel = CancelToken()
        self._models: dict[str, Any] = {}
        self.replies: dict[str, str] = {"base": "", "tuned": ""}

    def compose(self) -> ComposeResult:
        with Vertical(id="cmp-box"):
            yield Label("[b]Compare[/b]: one prompt, base and tuned model (greedy)")
            with Horizontal(id="cmp-row"):
                yield Input(placeholder="prompt", id="cmp-prompt")
                yield Button("Send", id="cmp-send", variant="primary")
                yield Button("Close", id="cmp-close")
            with Horizontal(id="cmp-panes"):
                with VerticalScroll(classes="cmp-pane"):
                    yield Label(f"base: {Path(self.base).name or self.base}")
                    yield Static("", id="cmp-base")
                with VerticalScroll(classes="cmp-pane"):
                    yield Label(f"tuned: {Path(self.tuned).name}")
                    yield Static("", id="cmp-tuned")

    @on(Input.Submitted, "#cmp-prompt")
    @on(Button.Pressed, "#cmp-send")
    def send(self) -> None:
        prompt = self.query_one("#cmp-prompt", Input).value.strip()
        if not prompt:
            return
        self.cancel.cancel()
        self.cancel = CancelToken()
        self.replies = {"base": "", "tuned": ""}
        for which in ("base", "tuned"):
            self.query_one(f"#cmp-{which}", Static).update("loading…")
        self._generate(prompt, self.cancel)

    def _show(self, which: str, text: str) -> None:
        self.replies[which] = text
        self.query_one(f"#cmp-{which}", Static).update(text)

    def _load(self, which: str) -> Any:
        if which not in self._models:
            from slmchat.engine.model.loader import load
            from slmchat.engine.model.spec import ModelSpec

            path = self.base if which == "base" else self.tuned
            self._models[which] = load(ModelSpec(path=path))
        return self._models[which]

    @work(thread=True, exclusive=True, group="compare")
    def _generate(self, prompt: str, cancel: CancelToken) -> None:
        from slmchat.engine.generation.decode import stream_generate
        from slmchat.engine.generation.prompting import ChatMessage, build_prompt
        from slmchat.engine.generation.sampling import SamplingParams

        worker = get_current_worker()
        params = SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        for which in ("base", "tuned"):
            try:
                lm = self._load(which)
                built = build_prompt(lm.tokenizer, [ChatMessage("user", prompt)],
                                     lm.info.context_length, params.max_new_tokens)
                text = ""
                for chunk in stream_generate(lm.model, lm.tokenizer, built.input_ids,
                                             params, cancel):
                    if worker.is_cancelled:
                        cancel.cancel()
                    text += chunk.text
                    if chunk.text:
                        self.app.call_from_thread(self._show, which, text)
                    if chunk.error:
                        text += f"\n[error: {chunk.error}]"
                self.app.call_from_thread(self._show, which, text or "(empty reply)")
            except Exception as exc:
                self.app.call_from_thread(self._show, which, f"[red]{exc}[/]")

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
