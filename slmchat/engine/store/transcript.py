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


def to_markdown(store: Store, conv_id: int) -> str:
    conv = store.get_conversation(conv_id)
    out = [f"# {conv.title}", ""]
    system = conv.settings.get("system_prompt")
    if system:
        out += ["> **System:** " + system.replace("\n", "\n> "), ""]
    for m in store.messages(conv_id):
        note = "" if m.status == "done" else f" *({m.status})*"
        out += [f"## {m.role.capitalize()}{note}", "", m.content, ""]
        if m.provenance:
            p = m.provenance
            model = p.get("model") or {}
            out += [f"<sub>{model.get('name', '?')} · seed {p.get('seed')} · "
                    f"{p.get('new_tokens', '?')} tokens · "
                    f"{p.get('decode_tps') or 0:.1f} tok/s</sub>", ""]
    return "\n".join(out).rstrip() + "\n"
