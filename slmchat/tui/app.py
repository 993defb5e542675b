"""SlmChatApp: wiring only. The engine and the store are passed in (tests pass fakes)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from slmchat.config import Settings, save_settings
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import first_line
from slmchat.tui.messages import ModelLoaded, ModelLoadFailed
from slmchat.tui.screens.chat import ChatScreen
from slmchat.tui.widgets.settings_panel import defaults_from

if TYPE_CHECKING:
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import Store

# (title, help, screen action) for the command palette; keys are in the footer.
CHAT_COMMANDS = (
    ("New chat", "Start a new conversation (Ctrl+N)", "new_chat"),
    ("Stop reply", "Stop the reply being written (Esc)", "stop"),
    ("Regenerate reply", "Write the last reply again (Ctrl+R)", "regenerate"),
    ("Continue reply", "Continue a reply that hit the token limit (Ctrl+G)", "continue_reply"),
    ("Edit last message", "Edit your last message and resend it (F5)", "edit_last"),
    ("Copy last reply", "Copy the last reply to the clipboard (F4)", "copy_last"),
    ("Select messages", "Move through messages with Up/Down; c copies, e edits (Ctrl+L)",
     "focus_log"),
    ("Chat settings", "System prompt and sampling for this chat (Ctrl+S)", "toggle_settings"),
    ("Toggle sidebar", "Show or hide the conversation list (Ctrl+B)", "toggle_sidebar"),
    ("Search conversations", "Full-text search over all messages (Ctrl+F)", "search"),
    ("Rename conversation", "Rename the conversation (F2)", "rename_conversation"),
    ("Delete conversation", "Delete the conversation for good", "delete_conversation"),
    ("Export conversation (Markdown)", "Write the conversation to a .md file (F3)",
     "export_conversation('md')"),
    ("Export conversation (JSON)", "Write the conversation with provenance to a .json file",
     "export_conversation('json')"),
    ("Inspect prompt", "The exact text, tokens, stops and sampling the next reply gets (F8; "
     "i on a selected message shows a past reply's)", "inspect_prompt"),
    ("Previous branch", "Show the previous version of a message that was edited or "
     "regenerated (Alt+Left; Left on a selected message)", "branch(-1)"),
    ("Next branch", "Show the next version of a message that was edited or regenerated "
     "(Alt+Right; Right on a selected message)", "branch(1)"),
    ("Compare with…", "Two models (or settings) side by side on each prompt; keep the "
     "better reply (F9)", "compare"),
)


class SlmChatApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "slmchat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "models", "Models", id="app.models"),
        Binding("ctrl+t", "finetune", "Fine-tune", id="app.finetune"),
    ]

    def __init__(
        self, settings: Settings, engine: EngineLike, store: Store,
        spec: ModelSpec | None = None, settings_problem: str | None = None,
        load_on_start: bool = True, persist_settings: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.store = store
        self.start_spec = spec or ModelSpec(
            path=settings.model.path, dtype=settings.model.dtype, device=settings.model.device,
            quant=settings.model.quant, adapter=settings.model.adapter,
        )
        self.settings_problem = settings_problem
        self.load_on_start = load_on_start
        self.persist_settings = persist_settings
        self.chat = ChatScreen(engine, store, defaults_from(settings), settings.ui.show_sidebar)

    def get_default_screen(self) -> Screen:
        return self.chat

    def on_mount(self) -> None:
        if self.settings.ui.theme in self.available_themes:
            self.theme = self.settings.ui.theme
        self._apply_keymap()
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.settings_problem:
            self.notify(self.settings_problem, title="Settings", severity="warning", timeout=15)
        if self.engine.info is not None:
            self.call_after_refresh(self.chat.model_loaded)
        elif self.load_on_start:
            self.load_model(self.start_spec)

    def _apply_keymap(self) -> None:
        """[ui] keys from settings.toml: binding id -> keys (slmchat/tui/keys.py)."""
        if not self.settings.ui.keys:
            return
        from slmchat.tui.keys import binding_ids, split_keymap

        good, unknown = split_keymap(self.settings.ui.keys, binding_ids(self.BINDINGS))
        self.set_keymap(good)
        if unknown:
            self.notify(f"Unknown key binding ids in settings.toml: {', '.join(unknown)}",
                        title="Settings", severity="warning", timeout=15)

    # --- settings persistence ---

    def _save(self) -> None:
        if not self.persist_settings:
            return
        try:
            save_settings(self.settings)
        except OSError as exc:
            self.notify(f"Could not save settings: {exc}", severity="error")

    def _remember_theme(self, theme: Any) -> None:
        name = getattr(theme, "name", str(theme))
        if name != self.settings.ui.theme:
            self.settings.ui.theme = name
            self._save()

    def save_generation_defaults(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if hasattr(self.settings.generation, key):
                setattr(self.settings.generation, key, value)
        self._save()

    # --- model loading ---

    def load_model(self, spec: ModelSpec) -> None:
        """Load ``spec`` in a worker; the current model stays until the new one is ready."""
        label = "default model" if spec.path in ("default", "") else spec.path
        self.chat.model_loading(label)
        self._load_worker(spec)

    @work(thread=True, exclusive=True, group="model")
    def _load_worker(self, spec: ModelSpec) -> None:
        try:
            info = self.engine.load(spec)
        except Exception as exc:  # ModelLoadError, or anything unexpected: one line
            self.post_message(ModelLoadFailed(spec, first_line(exc)))
        else:
            self.post_message(ModelLoaded(spec, info))

    async def on_model_loaded(self, event: ModelLoaded) -> None:
        info = event.info
        for warning in info.warnings:
            self.notify(warning, title="Model", severity="warning")
        self.notify(f"{info.label} loaded in {info.load_time_s:.1f}s", title="Model")
        await self.chat.model_loaded()
        m = self.settings.model
        spec = event.spec
        remembered = (m.path, m.dtype, m.device, m.quant, m.adapter)
        if remembered != (spec.path, spec.dtype, spec.device, spec.quant, spec.adapter):
            m.path, m.dtype, m.device = spec.path, spec.dtype, spec.device
            m.quant, m.adapter = spec.quant, spec.adapter
            self._save()  # "the last model used" loads next time

    def on_model_load_failed(self, event: ModelLoadFailed) -> None:
        kept = f" Still using {self.engine.info.name}." if self.engine.info else ""
        self.notify(f"{event.error}.{kept}", title="Model not loaded", severity="error",
                    timeout=20)
        self.chat.model_failed(event.error)

    # --- panels built elsewhere (model picker, fine-tuning) ---

    def _open_panel(self, module: str, cls: str, what: str) -> None:
        try:
            screen_cls = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            self.notify(f"The {what} panel is not available yet.", severity="warning")
            return
        screen = screen_cls(engine=self.engine, settings=self.settings)
        self.push_screen(screen, self._panel_done)

    def _panel_done(self, spec: ModelSpec | None) -> None:
        if isinstance(spec, ModelSpec):
            self.load_model(spec)

    def action_models(self) -> None:
        self._open_panel("slmchat.tui.screens.models", "ModelsScreen", "models")

    def action_finetune(self) -> None:
        self._open_panel("slmchat.tui.screens.finetune", "FinetuneScreen", "fine-tune")

    # --- command palette ---

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in CHAT_COMMANDS:
            yield SystemCommand(title, help_text, partial(self.chat.run_action, action))
        yield SystemCommand("Models", "Pick, load or quantize a model (Ctrl+O)", self.action_models)
        yield SystemCommand("Fine-tune", "Fine-tune on a local text file (Ctrl+T)",
                            self.action_finetune)

    # --- shutdown ---

    async def action_quit(self) -> None:
        """Stop a running reply first so its last piece is saved, then exit."""
        job = self.chat.job
        if job is not None:
            job.cancel.cancel()
            for worker in list(self.workers):
                if worker.group == "generate":
                    with contextlib.suppress(Exception):
                        await worker.wait()
        self.exit()
