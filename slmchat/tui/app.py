"""SlmChatApp: wiring only. The engine and the store are passed in (tests pass fakes)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette, Hit, Hits, Provider
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.system_commands import SystemCommandsProvider

from slmchat.config import Settings, save_settings
from slmchat.engine.model.spec import ModelSpec
from slmchat.errors import first_line
from slmchat.i18n import localize_bindings, localize_system_commands, t
from slmchat.tui.last_model import remember
from slmchat.tui.messages import (
    ChatReady,
    CompareRunRequested,
    GenerationDefaultsSaved,
    LoadModelRequested,
    ModelLoaded,
    ModelLoadFailed,
    ModelLoadProgress,
    PanelRequested,
    ThinkingChosen,
    TintDraftsChanged,
)
from slmchat.tui.screens.chat import ChatScreen
from slmchat.tui.ui_state import load_state, save_state, with_recent, with_thinking
from slmchat.tui.widgets.settings_panel import defaults_from
from slmchat.tui.widgets.side_panel import DEFAULT_WIDTH, SidePanel

if TYPE_CHECKING:
    from slmchat.engine.mcp.client import ToolHubLike
    from slmchat.engine.model.discovery import ModelEntry
    from slmchat.engine.model.spec import ModelInfo
    from slmchat.engine.session import EngineLike
    from slmchat.engine.store.store import Store
    from slmchat.tui.early_input import TypedAhead

def key_name(key: str) -> str:
    """"ctrl+q" -> "Ctrl+Q", "f12" -> "F12": keys as the README and the hints write them."""
    parts = key.split(",")[0].split("+")
    return "+".join(p.upper() if len(p) == 1 or (p[0] == "f" and p[1:].isdigit())
                    else p.capitalize() for p in parts)


# (message id, screen action) for the command palette: the title is t("cmd.<id>"), the
# help t("cmd.<id>.help"); keys are in the footer.
CHAT_COMMANDS = (
    ("new", "new_chat"),
    ("stop", "stop"),
    ("regenerate", "regenerate"),
    ("continue", "continue_reply"),
    ("edit_last", "edit_last"),
    ("copy_last", "copy_last"),
    ("select", "focus_log"),
    ("settings", "toggle_settings"),
    ("sidebar", "toggle_sidebar"),
    ("search", "search"),
    ("rename", "rename_conversation"),
    ("delete", "delete_conversation"),
    ("export_md", "export_conversation('md')"),
    ("export_json", "export_conversation('json')"),
    ("attach", "focus_prompt_attach"),
    ("mark_good", "mark_good"),
    ("mark_bad", "mark_bad"),
    ("clear_mark", "clear_mark"),
    ("edit_reply", "edit_reply"),
    ("export_training", "export_training"),
    ("finetune_marked", "finetune_marked"),
    ("inspect", "inspect_prompt"),
    ("branch_prev", "branch(-1)"),
    ("branch_next", "branch(1)"),
    ("compare", "compare"),
    ("tools", "toggle_tools"),
    ("reasoning", "toggle_reasoning"),
    ("thinking", "toggle_thinking"),
)


class CommandsWithHelp(SystemCommandsProvider):
    """The palette's commands, matched on their help text too: "quan" finds Models
    ("Pick, load or quantize a model"). Title matches rank first."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback, *_ in self.app.get_system_commands(self.screen):
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
            elif (score := matcher.match(help_text)) > 0:
                yield Hit(score * 0.5, name, callback, help=help_text)


class SlmChatApp(App[None]):
    CSS_PATH = "app.tcss"
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {
        CommandsWithHelp}
    TITLE = "slmchat"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "models", "Models", id="app.models"),
        Binding("ctrl+t", "finetune", "Fine-tune", id="app.finetune"),
        Binding("f12", "switch_model", "Switch model", show=False, id="app.switch_model"),
        # Textual's own Ctrl+Q, shown in the footer: a new user looks for the way out there.
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
    ]

    def __init__(
        self, settings: Settings, engine: EngineLike, store: Store,
        spec: ModelSpec | None = None, settings_problem: str | None = None,
        load_on_start: bool = True, persist_settings: bool = True,
        typed_ahead: TypedAhead | None = None,
        discover_fn: Callable[[], list[ModelEntry]] | None = None,
        tools: ToolHubLike | None = None,
    ) -> None:
        super().__init__()
        # Textual's hidden Ctrl+Q comes first in the merged bindings and would hide ours.
        by_key = self._bindings.key_to_bindings
        by_key["ctrl+q"] = [b for b in by_key.get("ctrl+q", []) if b.id == "app.quit"]
        localize_bindings(self)  # the footer's words, Textual's palette key included
        self.settings = settings
        self.engine = engine
        self.store = store
        self.start_spec = spec or ModelSpec().with_identity(settings.model.model_dump())
        self.settings_problem = settings_problem
        self.load_on_start = load_on_start
        self.persist_settings = persist_settings
        self.typed_ahead = typed_ahead  # keys typed before the first frame
        # Keys that arrive before the chat screen has mounted (and focused its prompt)
        # would go nowhere; they are held and replayed in order once it is ready.
        self._held_keys: list[events.Event] | None = []
        # Where the quick switcher and the model panel look for models (tests: a list).
        self.discover_fn = discover_fn
        self.current_spec: ModelSpec | None = None  # what load_model loaded last
        self.ui_state: dict[str, Any] = load_state() if persist_settings else {}
        # The chat screen gets what it needs from the app as attributes and asks for the
        # rest with messages (handled below: LoadModelRequested, PanelRequested, ...).
        self.chat = ChatScreen(engine, store, defaults_from(settings), settings.ui.show_sidebar)
        self.chat.settings = settings
        self.chat.tint_drafts = settings.ui.tint_accepted_drafts
        self.chat.discover_fn = discover_fn
        thinking = self.ui_state.get("thinking")
        self.chat.thinking_choices = {k: v for k, v in thinking.items() if isinstance(v, bool)
                                      } if isinstance(thinking, dict) else {}
        # The [[mcp]] servers' tools (tests pass a fake). Inert until a reply offers them:
        # with none configured nothing starts and nothing connects.
        if tools is None:
            from slmchat.engine.mcp.client import McpHub

            tools = McpHub(settings.mcp_servers())
        self.tools = tools
        self.chat.tool_calls.hub = tools
        width = self.ui_state.get("panel_width")
        self.chat.panel_width = width if isinstance(width, int) else DEFAULT_WIDTH

    def get_default_screen(self) -> Screen:
        return self.chat

    def on_mount(self) -> None:
        if self.settings.ui.theme in self.available_themes:
            self.theme = self.settings.ui.theme
        else:  # the default theme stays; settings.toml keeps the name until one is picked
            self.notify(t("app.unknown_theme", theme=self.settings.ui.theme[:80],
                          default=self.theme), title=t("app.settings_title"),
                        severity="warning", timeout=15)
        self._apply_keymap()
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.settings_problem:
            self.notify(self.settings_problem, title=t("app.settings_title"), severity="warning",
                        timeout=15)
        if self.engine.info is not None:
            self.call_after_refresh(self.chat.model_loaded)
        elif self.load_on_start:
            self.load_model(self.start_spec)

    # --- keys typed before the chat screen is ready ---

    async def on_event(self, event: events.Event) -> None:
        if self._held_keys is not None and isinstance(event, events.Key | events.Paste) \
                and not event.is_forwarded:
            self._held_keys.append(event)
            return
        await super().on_event(event)

    async def on_chat_ready(self, message: ChatReady) -> None:
        """The chat screen has mounted: type what came before the first frame, then the
        keys held since (posted by the screen, so it comes after every key held)."""
        if self.typed_ahead:
            await self.chat.type_ahead(self.typed_ahead.lines, self.typed_ahead.draft)
            self.typed_ahead = None
        held, self._held_keys = self._held_keys or [], None
        for event in held:
            await super().on_event(event)
    def _apply_keymap(self) -> None:
        """[ui] keys from settings.toml: binding id -> keys (slmchat/tui/keys.py)."""
        if not self.settings.ui.keys:
            return
        from slmchat.tui.keys import binding_ids, split_keymap

        good, unknown, bad = split_keymap(self.settings.ui.keys, binding_ids(self.BINDINGS))
        self.set_keymap(good)
        if unknown:
            self.notify(t("app.unknown_keys", ids=", ".join(unknown)),
                        title=t("app.settings_title"), severity="warning", timeout=15)
        if bad:  # the default keys stay for these
            self.notify(t("app.bad_keys", keys="; ".join(f"{k}: {why}" for k, why in bad.items())),
                        title=t("app.settings_title"), severity="warning", timeout=15)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is plain text, whoever posts it (widgets pass markup=True):
        they carry paths, error text and tuned models' names ("RUN [lora on BASE]"), which
        Rich would eat as markup tags or fail on; the catalogue holds no markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def action_help_quit(self) -> None:
        """Ctrl+C (Textual's hint that it does not quit): the quit key, in plain words
        (Textual's own hint is markup, which ``notify`` shows as it is)."""
        key = next((ab.binding.key for ab in self.active_bindings.values()
                    if ab.binding.action in ("quit", "app.quit")), "ctrl+q")
        self.notify(t("app.quit_hint", key=key_name(key)), title=t("app.quit_title"))

    # --- settings persistence ---

    def _save(self) -> None:
        if not self.persist_settings:
            return
        try:
            save_settings(self.settings)
        except OSError as exc:
            self.notify(t("app.cannot_save_settings", error=exc), severity="error")

    def _remember_theme(self, theme: Any) -> None:
        name = getattr(theme, "name", str(theme))
        if name != self.settings.ui.theme:
            self.settings.ui.theme = name
            self._save()

    def on_generation_defaults_saved(self, event: GenerationDefaultsSaved) -> None:
        """The settings panel's "Save as default"."""
        for key, value in event.values.items():
            if hasattr(self.settings.generation, key):
                setattr(self.settings.generation, key, value)
        self._save()

    def on_tint_drafts_changed(self, event: TintDraftsChanged) -> None:
        """The settings panel's "tint accepted drafts" box."""
        if event.on != self.settings.ui.tint_accepted_drafts:
            self.settings.ui.tint_accepted_drafts = event.on
            self._save()

    def on_compare_run_requested(self, event: CompareRunRequested) -> None:
        """A finished fine-tune's model beside its base in the compare view (the panel's
        Compare, the end-of-run offer); each column's head names its loaded model, the
        titles only say which is which."""
        from slmchat.tui.screens.compare import compare_base_and_tuned

        s = event.summary
        compare_base_and_tuned(
            self, event.engine if event.engine is not None else self.engine, self.store,
            self.chat.chat_settings, ModelSpec(path=s.model or "default"),
            ModelSpec(path=s.out), (t("ft.base"), t("ft.tuned")), opened=self.chat.open_compared)

    # --- model loading ---

    def on_load_model_requested(self, event: LoadModelRequested) -> None:
        self.load_model(event.spec)

    def load_model(self, spec: ModelSpec) -> None:
        """Load ``spec`` in a worker; the current model stays until the new one is ready."""
        label = t("app.default_model") if spec.path in ("default", "") else spec.path
        self.chat.model_loading(label)
        self._load_worker(spec)

    @work(thread=True, exclusive=True, group="model")
    def _load_worker(self, spec: ModelSpec) -> None:
        def progress(text: str, fraction: float) -> None:  # a first conversion: minutes
            self.post_message(ModelLoadProgress(text, fraction))

        try:
            info = self.engine.load(spec, progress)
        except Exception as exc:  # ModelLoadError, or anything unexpected: one line
            self.post_message(ModelLoadFailed(spec, first_line(exc)))
        else:
            self.post_message(ModelLoaded(spec, info))

    async def on_model_loaded(self, event: ModelLoaded) -> None:
        info = event.info
        for warning in info.warnings:
            self.notify(warning, title=t("app.model_title"), severity="warning")
        self.notify(t("app.loaded", label=info.label, s=info.load_time_s),
                    title=t("app.model_title"))
        self._remote_notice(info)
        self.current_spec = event.spec
        await self.chat.model_loaded(event.spec)
        recent = self.ui_state.get("recent_models")
        self._save_ui_state(recent_models=with_recent(
            recent if isinstance(recent, list) else [], event.spec))
        if self.persist_settings:  # the app's own memory; settings.toml [model] stays
            try:
                remember(event.spec, self.settings)
            except OSError as exc:
                self.notify(t("app.cannot_remember", error=exc), severity="warning")

    def _remote_notice(self, info: ModelInfo) -> None:
        """Once per host (remembered in app-state.json): a remote model off this machine
        means the conversation leaves it."""
        from slmchat.engine.model.remote import host_is_loopback, is_remote_kind

        if not is_remote_kind(info.kind) or host_is_loopback(info.device):
            return
        seen = self.ui_state.get("remote_hosts_noticed")
        seen = [h for h in seen if isinstance(h, str)] if isinstance(seen, list) else []
        if info.device in seen:
            return
        self.notify(t("app.remote_notice", host=info.device, name=info.name),
                    title=t("app.remote_title"), severity="warning", timeout=20)
        self._save_ui_state(remote_hosts_noticed=[*seen, info.device])

    def on_model_load_progress(self, event: ModelLoadProgress) -> None:
        self.chat.model_load_progress(event.text, event.fraction)

    def on_model_load_failed(self, event: ModelLoadFailed) -> None:
        kept = t("app.still_using", name=self.engine.info.name) if self.engine.info else ""
        self.notify(f"{event.error}.{kept}", title=t("app.not_loaded_title"), severity="error",
                    timeout=20)
        self.chat.model_failed(event.error)

    # --- panels (imported when first opened: the first frame must not wait for them) ---
    # From 110 columns they dock beside the chat (screens/side_panels.py); below, they
    # take the screen and Esc comes back.

    def _panel_done(self, spec: ModelSpec | None) -> None:
        if isinstance(spec, ModelSpec):
            self.load_model(spec)

    def _docks(self) -> bool:
        return self.screen is self.chat and self.chat.can_dock()

    async def open_panel(self, kind: str, data_file: str | None = None) -> None:
        """The ``kind`` panel ("models", "finetune"): docked beside the chat when it is
        wide enough, else a screen of its own."""
        if self._docks():
            await self.chat.toggle_panel(kind, data_file)
        elif kind == "models":
            from slmchat.tui.screens.models import ModelsScreen

            self.push_screen(ModelsScreen(engine=self.engine, settings=self.settings,
                                          discover_fn=self.discover_fn), self._panel_done)
        else:
            from slmchat.tui.screens.finetune import FinetuneScreen

            self.push_screen(FinetuneScreen(engine=self.engine, settings=self.settings,
                                            runs_root=self.chat.runs_root, data_file=data_file),
                             self._panel_done)

    async def on_panel_requested(self, event: PanelRequested) -> None:
        await self.open_panel(event.kind, event.data_file)

    async def action_models(self) -> None:
        await self.open_panel("models")

    async def action_finetune(self) -> None:
        await self.open_panel("finetune")

    def action_switch_model(self) -> None:
        """The quick switcher: Enter loads the chosen model for this conversation."""
        from slmchat.engine.model.discovery import discover
        from slmchat.tui.screens.model_switcher import ModelSwitcher

        recent = self.ui_state.get("recent_models")
        self.push_screen(ModelSwitcher(
            self.discover_fn or (lambda: discover(self.settings)),
            recent=recent if isinstance(recent, list) else [],
            current=self.current_spec), self._panel_done)

    def on_side_panel_resized(self, event: SidePanel.Resized) -> None:
        self._save_ui_state(panel_width=event.width)

    def on_thinking_chosen(self, event: ThinkingChosen) -> None:
        self._save_ui_state(thinking=with_thinking(self.ui_state, event.path, event.on))

    def _save_ui_state(self, **fields: Any) -> None:
        self.ui_state.update(fields)
        if not self.persist_settings:
            return
        try:
            save_state(self.ui_state)
        except OSError as exc:
            self.notify(t("app.cannot_save_state", error=exc), severity="warning")

    # --- command palette ---

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from localize_system_commands(super().get_system_commands(screen))
        for msg_id, action in CHAT_COMMANDS:
            yield SystemCommand(t(f"cmd.{msg_id}"), t(f"cmd.{msg_id}.help"),
                                partial(self.chat.run_action, action))
        yield SystemCommand(t("cmd.models"), t("cmd.models.help"), self.action_models)
        yield SystemCommand(t("cmd.finetune"), t("cmd.finetune.help"), self.action_finetune)
        yield SystemCommand(t("cmd.switch_model"), t("cmd.switch_model.help"),
                            self.action_switch_model)

    def action_command_palette(self) -> None:
        """Textual's palette, with its placeholder in the UI language."""
        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            self.push_screen(CommandPalette(id="--command-palette",
                                            placeholder=t("palette.placeholder")))

    # --- shutdown ---

    def on_unmount(self) -> None:
        self.tools.close()  # the MCP servers this app started (none: nothing to do)

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
