"""``slmchat remote add/list/test/remove``: profiles of served engines (vLLM, SGLang,
llama-server, Ollama, another ``slmchat serve``) in settings.toml's ``[[remote]]``.

``add`` and ``remove`` rewrite settings.toml (a file that does not parse is never
overwritten); ``list`` reads it and opens no connection; ``test`` checks each profile:
the key's variable is set, the server answers, takes the key, lists models, and one of
them writes a token: one line for a working profile, one line per problem otherwise.
Keys are never written: a profile names the environment variable that holds one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from slmchat.errors import InvalidParameterError

if TYPE_CHECKING:
    from slmchat.config import Settings
    from slmchat.engine.model.remote import RemoteProfile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remote", help="profiles of served engines (vLLM, llama-server, Ollama, "
                       "slmchat serve) whose models chat like local ones",
                       description="Write, list and check [[remote]] profiles in settings.toml.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    add = verbs.add_parser("add", help="write a profile",
                           description="Write a [[remote]] profile to settings.toml.")
    add.add_argument("name", help="short name; its models show as NAME: model")
    add.add_argument("base_url", help="API root: http://host:8000/v1 (OpenAI kind) or "
                                      "http://host:11434 (Ollama)")
    add.add_argument("--kind", choices=("openai", "ollama"), default="openai",
                     help="the API the server speaks (default openai)")
    add.add_argument("--api-key-env", metavar="VAR", default=None,
                     help="the NAME of the environment variable holding the key (never the key)")
    add.add_argument("--model", dest="models", action="append", default=[], metavar="ID",
                     help="list only this model of the server (repeatable; default: all)")
    add.add_argument("--timeout", type=float, default=120.0, metavar="S",
                     help="longest wait for the next bytes of a reply (default 120)")
    add.add_argument("--replace", action="store_true", help="replace a profile of that name")
    add.set_defaults(func=run_add)
    lst = verbs.add_parser("list", help="show the profiles (no connection is made)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=run_list)
    test = verbs.add_parser("test", help="check profiles: reachable, key, models, one token")
    test.add_argument("name", nargs="?", default=None, help="one profile (default: all)")
    test.add_argument("--model", default=None, help="the model to ask for a token "
                                                    "(default: the first listed)")
    test.set_defaults(func=run_test)
    rm = verbs.add_parser("remove", help="delete a profile")
    rm.add_argument("name")
    rm.set_defaults(func=run_remove)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _settings(writing: bool) -> Settings:
    from slmchat.config import load_settings, settings_path

    settings, problem = load_settings()
    if problem and writing:  # never overwrite a file we could not read
        raise InvalidParameterError(f"{problem}; fix {settings_path()} first")
    if problem:
        print(f"slmchat: warning: {problem}", file=sys.stderr)
    return settings


def run_add(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from slmchat.config import RemoteSettings, save_settings

    settings = _settings(writing=True)
    try:
        entry = RemoteSettings(name=args.name, base_url=args.base_url, kind=args.kind,
                               api_key_env=args.api_key_env, models=args.models,
                               timeout_s=args.timeout)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "profile"
        raise InvalidParameterError(f"{field}: {err.get('msg')}") from None
    others = [r for r in settings.remote if r.name != entry.name]
    if len(others) != len(settings.remote) and not args.replace:
        raise InvalidParameterError(f"a profile named {entry.name!r} exists; --replace "
                                    "replaces it")
    settings.remote = [*others, entry]
    path = save_settings(settings)
    prof = entry.profile()
    where = "this machine" if prof.loopback else prof.host
    key = f", key from ${prof.api_key_env}" if prof.api_key_env else ", no key"
    print(f"slmchat: profile {prof.name} ({prof.kind}, {prof.api_base}{key}) written to {path}; "
          f"conversations on its models are sent to {where}. `slmchat remote test "
          f"{prof.name}` checks it")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from slmchat.config import save_settings

    settings = _settings(writing=True)
    kept = [r for r in settings.remote if r.name != args.name]
    if len(kept) == len(settings.remote):
        raise InvalidParameterError(f"no remote profile named {args.name!r}")
    settings.remote = kept
    save_settings(settings)
    print(f"slmchat: profile {args.name} removed")
    return 0


def run_list(args: argparse.Namespace) -> int:
    import os

    settings = _settings(writing=False)
    profs = [r.profile() for r in settings.remote]
    if args.json:
        print(json.dumps([{"name": p.name, "kind": p.kind, "base_url": p.base_url,
                           "api_key_env": p.api_key_env, "models": list(p.models),
                           "timeout_s": p.timeout_s, "host": p.host, "loopback": p.loopback}
                          for p in profs], indent=2))
        return 0
    if not profs:
        print("(no remote profiles; `slmchat remote add NAME URL` writes one)")
        return 0
    rows = [("NAME", "KIND", "BASE_URL", "KEY", "MODELS")]
    for p in profs:
        key = "-" if not p.api_key_env else \
            f"${p.api_key_env} ({'set' if os.environ.get(p.api_key_env) else 'NOT SET'})"
        rows.append((p.name, p.kind, p.base_url, key, ", ".join(p.models) or "all"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)),
                         row[-1]]).rstrip())
    return 0


def check(prof: RemoteProfile, model: str | None = None) -> tuple[str | None, list[str]]:
    """(the working line, problems): each problem one line naming the profile."""
    from slmchat.engine.generation.decode import CancelToken
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model import remote
    from slmchat.engine.model.remote_http import RemoteError
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.runtimes import remote as remote_runtime
    from slmchat.errors import SlmChatError

    problem = prof.key_problem()
    if problem:
        return None, [problem]
    started = time.perf_counter()
    try:
        models = remote.list_models(prof)
    except RemoteError as exc:
        return None, [str(exc)]
    if not models:
        filt = " matching the profile's models filter" if prof.models else ""
        return None, [f"{prof.name}: {prof.host} lists no models{filt}"]
    ids = [m.id for m in models]
    if model is not None and model not in ids:
        return None, [f"{prof.name}: {prof.host} does not list {model!r} (it lists: "
                      f"{', '.join(ids[:8])})"]
    chosen = model or ids[0]
    try:
        lm = remote_runtime.RUNTIME.load_remote(ModelSpec(path=remote.remote_path(prof.name, chosen)))
        chunks = list(remote_runtime.RUNTIME.stream(
            lm, [ChatMessage("user", "Say OK.")],
            SamplingParams(temperature=0.0, max_new_tokens=1, seed=0), CancelToken()))
    except SlmChatError as exc:
        return None, [str(exc)]
    last = chunks[-1]
    if last.finish_reason == "error":
        return None, [last.error or f"{prof.name}: the reply failed"]
    if not any(c.text for c in chunks) and not last.new_tokens:
        return None, [f"{prof.name}: {chosen!r} on {prof.host} answered no token"]
    ttft = f"first token in {last.ttft_s:.2f} s" if last.ttft_s is not None else "answered"
    where = "this machine" if prof.loopback else prof.host
    return (f"{prof.name}: ok: {prof.api_base} ({prof.kind}, {where}), {len(ids)} model"
            f"{'s' if len(ids) != 1 else ''}, {chosen} {ttft} "
            f"({time.perf_counter() - started:.2f} s in all)"), []


def run_test(args: argparse.Namespace) -> int:
    from slmchat.engine.model import remote

    _settings(writing=False)  # registers the profiles
    profs = remote.profiles()
    if args.name is not None:
        profs = [remote.profile(args.name)] if args.name in {p.name for p in profs} else []
        if not profs:
            raise InvalidParameterError(f"no remote profile named {args.name!r} "
                                        "(`slmchat remote list`)")
    if not profs:
        print("(no remote profiles; `slmchat remote add NAME URL` writes one)")
        return 0
    failed = False
    for prof in profs:
        ok, problems = check(prof, args.model)
        if ok:
            print(ok)
        for line in problems:
            failed = True
            print(f"slmchat: {line}", file=sys.stderr)
    return 1 if failed else 0
