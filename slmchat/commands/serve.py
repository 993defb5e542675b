"""``slmchat serve``: the model behind OpenAI- and Ollama-compatible HTTP APIs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from slmchat.commands.common import add_model_args, spec_from_args
from slmchat.commands.generate import add_sampling_args, sampling_from_args, speculation_from_args
from slmchat.errors import InvalidParameterError

if TYPE_CHECKING:
    from slmchat.engine.model.discovery import ModelEntry

API_KEY_ENV = "SLMCHAT_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the model over OpenAI- and Ollama-compatible HTTP APIs",
        description="Serve the model on http://HOST:PORT: OpenAI API under /v1 (models, "
                    "chat/completions, completions) and Ollama API under /api (tags, show, "
                    "chat, generate). One generation at a time; others queue in order.")
    add_model_args(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --api-key)")
    g.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free)")
    g.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    g.add_argument("--max-queue", type=int, default=8,
                   help="requests that may wait for the model; more get 429 (default 8)")
    g.add_argument("--log-conversations", action="store_true",
                   help="store each request and reply as a conversation (shown in the app)")
    g.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser pages from this origin (repeatable; default none)")
    g.add_argument("--no-swap", action="store_true",
                   help="serve only the loaded model (default: a request may name another "
                        "local model, which is then loaded)")
    g.add_argument("--max-body-mb", type=float, default=4.0,
                   help="largest request body in MB; larger get 413 (default 4)")
    g.add_argument("--with-remote", action="store_true",
                   help="also list the models of the [[remote]] profiles (slmchat remote list) "
                        "and pass chats on them to their servers, so one local endpoint "
                        "reaches both")
    g.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"),
                   default="info", help="server log level (default info: one line per request)")
    add_sampling_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.session import Engine
    from slmchat.server.app import build_app
    from slmchat.server.http_server import bind, check_exposure, serve
    from slmchat.server.state import ServerConfig

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if args.api_key is not None and not args.api_key.strip():
        raise InvalidParameterError("--api-key is empty")
    check_exposure(args.host, api_key)
    if args.max_queue < 0:
        raise InvalidParameterError(f"--max-queue must be >= 0, got {args.max_queue}")
    if not 0 < args.max_body_mb <= 1024:
        raise InvalidParameterError(f"--max-body-mb must be in (0, 1024], got {args.max_body_mb}")
    defaults = sampling_from_args(args)
    speculation = speculation_from_args(args)
    spec = spec_from_args(args)
    discover = _with_remote() if args.with_remote else None
    sock = bind(args.host, args.port)  # a busy port fails now, not after the model load
    try:
        configure_threads()
        # generation only: the CLI's fast start-up path
        engine = Engine(lite=True, speculation=speculation)
        print(f"slmchat serve: loading {spec.path} ...", file=sys.stderr, flush=True)
        info = engine.load(spec)
        for warning in info.warnings:
            print(f"slmchat: warning: {warning}", file=sys.stderr)
        log_store = None
        if args.log_conversations:
            from slmchat.engine.store.store import Store
            from slmchat.server.convlog import ConversationLog

            log_store = ConversationLog(Store.open_default())
        config = ServerConfig(
            api_key=api_key, host=args.host, max_queue=args.max_queue,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            cors_origins=tuple(args.cors_origin), defaults=defaults,
            allow_swap=not args.no_swap, base_spec=spec,
        )
        app = build_app(engine, config, log_store, discover=discover)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host

        def started() -> None:
            print(f"slmchat serve: {info.label} on http://{shown}:{port} "
                  f"(OpenAI: http://{shown}:{port}/v1, Ollama: http://{shown}:{port}); "
                  "Ctrl+C stops", flush=True)

        serve(app, sock, log_level=args.log_level, on_started=started)
    finally:
        sock.close()
    print("slmchat serve: stopped", file=sys.stderr, flush=True)
    return 0


def _with_remote() -> Callable[[], list[ModelEntry]]:
    """Local models, then the models of each remote profile (listed again when the
    server's catalog cache expires); a request for one loads it, which passes the
    conversation to its server."""
    from slmchat.config import load_settings
    from slmchat.engine.model.discovery import discover, remote_entries

    settings, _ = load_settings()
    if not settings.remote:
        raise InvalidParameterError("--with-remote: settings.toml has no [[remote]] profile "
                                    "(`slmchat remote add NAME URL` writes one)")
    names = ", ".join(r.name for r in settings.remote)
    print(f"slmchat serve: with the models of remote profiles {names}", file=sys.stderr)
    return lambda: [*discover(include_remote=False), *remote_entries(settings)]
