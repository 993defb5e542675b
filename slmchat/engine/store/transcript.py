"""Export one conversation as Markdown (for people: the branch on screen) or JSON (the
whole tree of branches, with full provenance)."""

from __future__ import annotations

import json
from dataclasses import asdict

from slmchat.engine.store.schema import SCHEMA_VERSION
from slmchat.engine.store.store import Store


def to_json(store: Store, conv_id: int) -> str:
    conv = store.get_conversation(conv_id)
    data = {
        "format": "slmchat-conversation", "schema": SCHEMA_VERSION,
        "conversation": asdict(conv),
        # Every branch: each message names its parent_id; "active" is the branch shown.
        "messages": [asdict(m) for m in store.all_messages(conv_id)],
        "active": [m.id for m in store.messages(conv_id)],
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


def _quote_system(text: str) -> list[str]:
    if not text:
        return ["> *(no system prompt from here on)*", ""]
    return ["> **System:** " + text.replace("\n", "\n> "), ""]


def to_markdown(store: Store, conv_id: int) -> str:
    """The conversation for people. The system prompt is shown where it took effect (each
    reply records the one it was given); replies saved before that was recorded fall back
    to the conversation's current setting, at the top."""
    conv = store.get_conversation(conv_id)
    messages = store.messages(conv_id)
    recorded = any(m.provenance and "system_prompt" in m.provenance for m in messages)
    out = [f"# {conv.title}", ""]
    system = conv.settings.get("system_prompt")
    if system and not recorded:
        out += _quote_system(system)
    shown = ""  # the system prompt in effect, as last shown
    turn_start = len(out)  # where the current user turn begins
    for m in messages:
        if m.role == "user":
            turn_start = len(out)
        used = (m.provenance or {}).get("system_prompt")
        if m.role == "assistant" and used is not None and used != shown:
            out[turn_start:turn_start] = _quote_system(used)
            shown = used
        note = "" if m.status == "done" else f" *({m.status})*"
        out += [f"## {m.role.capitalize()}{note}", "", m.content, ""]
        if m.provenance:
            p = m.provenance
            model = p.get("model") or {}
            seed = "" if (p.get("sampling") or {}).get("temperature") == 0 \
                else f" · seed {p.get('seed')}"
            out += [f"<sub>{model.get('name', '?')}{seed} · "
                    f"{p.get('new_tokens', '?')} tokens · "
                    f"{p.get('decode_tps') or 0:.1f} tok/s</sub>", ""]
    return "\n".join(out).rstrip() + "\n"
