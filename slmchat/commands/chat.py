"""``slmchat chat`` (the default command): open the chat app."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slmchat.tui.early_input import TypeAhead


def register(sub: argparse._SubParsersAction) -> None:
    from slmchat.commands.common import add_model_args

    p = sub.add_parser("chat", help="open the chat app (the default command)",
                       description="Open the terminal chat app. The model loads in the "
                                   "background; you can type at once. The UI is in English "
                                   "or Japanese: [ui] language = \"ja\" in settings.toml "
                                   "(or SLMCHAT_UI__LANGUAGE=ja); the default follows the "
                                   "locale (LANG=ja_JP.UTF-8 gives Japanese).")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # First of all: keys typed while the app starts are kept for it, not echoed and lost.
    from slmchat.tui.early_input import TypeAhead

    early = TypeAhead.start()
    try:
        return _run(args, early)
    finally:
        if early is not None:
            early.restore()


def _run(args: argparse.Namespace, early: TypeAhead | None) -> int:
    # Nothing here imports torch: the first frame comes before any model code is loaded
    # (the engine sets its threads per reply, engine/devices.chat_threads).
    from slmchat.commands.common import prepare_default_model, spec_from_args
    from slmchat.config import load_settings
    from slmchat.engine.generation.speculative import parse as parse_speculative
    from slmchat.engine.model.spec import IDENTITY_FIELDS
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.i18n import resolve_language, set_language
    from slmchat.tui.app import SlmChatApp
    from slmchat.tui.last_model import remembered

    settings, problem = load_settings()
    set_language(resolve_language(settings.ui.language))  # before any widget is built
    spec = spec_from_args(args)
    if not any(getattr(args, "model" if k == "path" else k, None) for k in IDENTITY_FIELDS):
        spec = remembered(settings, spec) or spec  # the model last loaded in the app
    prepare_default_model(spec)  # first start only: converts under a bar
    store = Store.open_default()
    try:
        speculation = parse_speculative(settings.generation.speculative)  # validated on load
        app = SlmChatApp(settings, Engine(speculation=speculation), store, spec=spec,
                         settings_problem=problem,
                         typed_ahead=early.take() if early is not None else None)
        app.run()
    finally:
        store.close()
    return 0
