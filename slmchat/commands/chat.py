"""``slmchat chat`` (the default command): open the chat app."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from slmchat.commands.common import add_model_args

    p = sub.add_parser("chat", help="open the chat app (the default command)",
                       description="Open the terminal chat app. The model loads in the "
                                   "background; you can type at once.")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slmchat.commands.common import prepare_default_model, spec_from_args
    from slmchat.config import load_settings
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.session import Engine
    from slmchat.engine.store.store import Store
    from slmchat.tui.app import SlmChatApp

    settings, problem = load_settings()
    spec = spec_from_args(args)
    prepare_default_model(spec)
    configure_threads()
    store = Store.open_default()
    try:
        app = SlmChatApp(settings, Engine(), store, spec=spec, settings_problem=problem)
        app.run()
    finally:
        store.close()
    return 0
