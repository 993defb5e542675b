"""Export one conversation as Markdown (for people: the branch on screen) or JSON (the
whole tree of branches, with full provenance)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from slmchat.engine.store.provenance import Provenance
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


def _numbers(ns: list[int]) -> str:
    """[1, 2, 3, 5] -> "1–3, 5"."""
    spans: list[list[int]] = []
    for n in ns:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans)


def _system_block(used: dict[str, list[int]]) -> list[str]:
    """The system prompts at the top, where the model reads them: each prompt goes first
    in every prompt it is given with, before the whole conversation. When they changed,
    each says which replies (numbered in order) were written with it."""
    if not used or list(used) == [""]:
        return []
    if len(used) == 1:
        (text,) = used
        return ["> **System:** " + text.replace("\n", "\n> "), ""]
    out = []
    for text, ns in used.items():
        which = f"repl{'y' if len(ns) == 1 else 'ies'} {_numbers(ns)}"
        if text:
            out += [f"> **System** ({which}): " + text.replace("\n", "\n> "), ""]
        else:
            out += [f"> *(no system prompt for {which})*", ""]
    return out


def _tool_block(call: dict[str, Any]) -> list[str]:
    """A tool call the reply made, its arguments, and the result (or why it did not run)."""
    name = f"{call.get('server')}.{call.get('name')}" if call.get("server") else call.get("name")
    args = json.dumps(call.get("arguments") or {}, indent=2, ensure_ascii=False)
    out = [f"**Tool call:** `{name}`", "", "```json", args, "```", ""]
    if call.get("consent") == "denied":
        out += ["*(not run: denied)*", ""]
    elif "result" in call:
        label = "Tool error" if call.get("is_error") else "Result"
        out += [f"**{label}:**", "", "```", str(call["result"]), "```", ""]
    return out


def to_markdown(store: Store, conv_id: int) -> str:
    """The conversation for people. The system prompt is shown at the top, as the model
    reads it (first, before the whole conversation, even when it was set mid-way); when
    it changed, each one says which replies were written with it (each reply records its
    own). Replies saved before that was recorded fall back to the conversation's current
    setting."""
    conv = store.get_conversation(conv_id)
    messages = store.messages(conv_id)
    recorded = any(m.prov is not None and m.prov.system_prompt is not None for m in messages)
    out = [f"# {conv.title}", ""]
    system = conv.settings.get("system_prompt")
    replies = [m for m in messages if m.role == "assistant"]
    if recorded:
        used: dict[str, list[int]] = {}
        for n, m in enumerate(replies, 1):
            text = m.prov.system_prompt if m.prov is not None else None
            if text is not None:
                used.setdefault(text, []).append(n)
        out += _system_block(used)
    elif system:
        out += ["> **System:** " + system.replace("\n", "\n> "), ""]
    for m in messages:
        note = "" if m.status == "done" else f" *({m.status})*"
        out += [f"## {m.role.capitalize()}{note}", ""]
        if m.reasoning:  # folded, as on screen: the answer is what the reader wants first
            out += ["<details><summary>Thinking</summary>", "", m.reasoning, "", "</details>", ""]
        out += [m.content, ""]
        if m.tool_call:
            out += _tool_block(m.tool_call)
        if m.provenance:
            p = Provenance.from_dict(m.provenance)
            seed = "" if p.greedy else f" · seed {p.seed}"
            out += [f"<sub>{p.model.name if p.model else '?'}{seed} · "
                    f"{'?' if p.new_tokens is None else p.new_tokens} tokens · "
                    f"{p.decode_tps or 0:.1f} tok/s</sub>", ""]
    return "\n".join(out).rstrip() + "\n"
