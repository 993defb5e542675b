"""``slmchat models``: list every local model (no weights are loaded), then the models of
the remote profiles (one listing request per profile; no network without a profile)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list local models (default, runs, folders, HF cache, "
                       "GGUF, Ollama, LM Studio, llama.cpp, GPT4All)",
                       description="List every local model slmchat can load.")
    p.add_argument("filter", nargs="?", default="", help="only models matching these words")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--no-hf-cache", action="store_true",
                   help="skip the Hugging Face cache scan")
    p.add_argument("--no-tools", action="store_true",
                   help="skip other tools' stores (Ollama, LM Studio, llama.cpp, GPT4All)")
    p.add_argument("--no-remote", action="store_true",
                   help="skip the models of remote profiles (the only listing that uses the "
                        "network, and only when a [[remote]] profile exists)")
    p.set_defaults(func=run)


def base_name(base: str, names: dict[str, str]) -> str:
    """A LoRA's base, short: the name of the listed model at that path, else the folder's
    name ("default" and hub ids stay as they are)."""
    if base in names:
        return names[base]
    try:
        resolved = str(Path(base).expanduser().resolve())
    except (OSError, ValueError):
        resolved = base
    for path, name in names.items():
        with contextlib.suppress(OSError, ValueError):
            if str(Path(path).expanduser().resolve()) == resolved:
                return name
    folder = Path(base).expanduser()
    if "/" not in base or not folder.is_absolute():
        return base  # "default", an id like "HuggingFaceTB/SmolLM2-135M-Instruct"
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name[len("models--"):].replace("--", "/")  # hub cache
    return folder.name or base


def run(args: argparse.Namespace) -> int:
    from slmchat.config import load_settings
    from slmchat.engine.model.discovery import discover, filter_entries
    from slmchat.engine.model.remote import is_remote_kind
    from slmchat.fmt import human_bytes, human_count

    settings, problem = load_settings()
    if problem:
        print(f"slmchat: warning: {problem}", file=sys.stderr)
    found = discover(settings, include_hf_cache=not args.no_hf_cache,
                     include_tools=not args.no_tools, include_remote=not args.no_remote)
    entries = filter_entries(found, args.filter)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    header = ("NAME", "FORMAT", "ARCH", "PARAMS", "SIZE", "CHAT", "SOURCE", "PATH")
    rows = [header]
    names = {e.path: e.name for e in found}
    for e in entries:
        # A LoRA's base by the name it is listed under (its whole path is in --json):
        # "lora on /home/me/.cache/huggingface/hub/models--.../snapshots/<hash>" was its
        # FORMAT, pushing every column after it off the screen.
        fmt = e.format + (f" on {base_name(e.base, names)}" if e.base else "")
        if e.problem:
            fmt += f" [{e.problem}]"
        aliases = e.extra.get("aliases") or ()
        # a remote model as "lab: llama3" (`--model lab:llama3` loads it)
        name = (e.label if is_remote_kind(e.format) else e.name) + \
            (f" (= {', '.join(aliases)})" if aliases else "")
        rows.append((name, fmt, e.architecture, human_count(e.n_params),
                     human_bytes(e.size_bytes), "yes" if e.has_chat_template else "no",
                     e.source, e.path))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    if not entries:
        print("(no models match)" if args.filter else "(no models found)")
    return 0
