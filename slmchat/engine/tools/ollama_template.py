"""A model's Jinja chat template as an Ollama ``TEMPLATE`` (Go text/template), its stop
strings and its default system prompt.

Jinja cannot be translated in general, so the template is *measured*: it is rendered with
sentinel contents one message at a time, which gives each role's text before and after
the content, the generation prompt, a header printed once (a BOS string) and the system
prompt the template adds when the conversation has none (Ollama's SYSTEM, which it sends
as the first message). The Go template is then written
from those pieces in the shape of Ollama's own (``template/chatml.gotmpl``: a range over
``.Messages`` and the generation prompt at the end). The pieces are checked by rebuilding
a longer conversation and comparing it with the Jinja rendering; a template whose text
depends on more than the role (Llama-2's system inside the first ``[INST]``) is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slmchat.errors import InvalidParameterError

ROLES = ("system", "user", "assistant")
_SENTINEL = "XSLMCHATX{}X"


@dataclass(frozen=True)
class ChatShape:
    """The chat template as plain text pieces."""

    header: str
    wrappers: dict[str, tuple[str, str]]  # role -> (before content, after content)
    generation: str
    default_system: str | None

    def render(self, messages: list[dict[str, str]]) -> str:
        """What the Go template prints for ``messages`` (with the generation prompt); the
        default system message is added first as Ollama adds SYSTEM."""
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        out = [self.header]
        for m in messages:
            before, after = self.wrappers[m["role"]]
            out.append(before + m["content"] + after)
        return "".join(out) + self.generation

    def go_template(self) -> str:
        """The Ollama TEMPLATE text (Go text/template over ``.Messages``)."""
        parts = [_literal(self.header), "{{ range .Messages }}"]
        for i, role in enumerate(ROLES):
            before, after = self.wrappers[role]
            parts.append(("{{ if" if i == 0 else "{{ else if") + f' eq .Role "{role}" }}}}')
            parts.append(_literal(before) + "{{ .Content }}" + _literal(after))
        parts.append("{{ end }}{{ end }}")
        parts.append(_literal(self.generation))
        return "".join(parts)


def _literal(text: str) -> str:
    """Text printed verbatim by Go's text/template; action delimiters become a quoted
    string action (Go string literal syntax accepts JSON's escapes)."""
    if "{{" in text or "}}" in text:
        return "{{ " + json.dumps(text) + " }}"
    return text


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation)
    except Exception as exc:  # a Jinja error, a template that raises on a role order
        raise InvalidParameterError(
            f"the chat template cannot be converted for Ollama: {str(exc).splitlines()[0][:120]}"
        ) from exc
    return str(text)


def _split(chunk: str, content: str, what: str) -> tuple[str, str]:
    if chunk.count(content) != 1:
        raise InvalidParameterError(
            f"the chat template cannot be converted for Ollama: the {what} message's text "
            "is not printed as it is")
    before, after = chunk.split(content)
    return before, after


def _message(role: str, n: int) -> dict[str, str]:
    return {"role": role, "content": _SENTINEL.format(n)}


def measure(tokenizer: Any) -> ChatShape:
    """Measure ``tokenizer.chat_template`` (see the module docstring)."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidParameterError("the model has no chat template to write as an Ollama "
                                    "TEMPLATE")
    # system, user, assistant, user: each chunk is what one more message adds.
    convo = [_message("system", 0), _message("user", 1), _message("assistant", 2),
             _message("user", 3)]
    renders = [""] + [_render(tokenizer, convo[:k], False) for k in range(1, len(convo) + 1)]
    for k in range(1, len(renders)):
        if not renders[k].startswith(renders[k - 1]):
            raise InvalidParameterError("the chat template cannot be converted for Ollama: "
                                        "earlier messages print differently as it grows")
    chunks = [renders[k + 1][len(renders[k]):] for k in range(len(convo))]
    wrappers = {m["role"]: _split(c, m["content"], m["role"])
                for m, c in zip(convo[:3], chunks[:3], strict=True)}
    full = _render(tokenizer, convo, True)
    generation = full[len(renders[-1]):] if full.startswith(renders[-1]) else ""
    header, default_system = _header_and_system(tokenizer, wrappers)
    s_before, s_after = wrappers["system"]
    wrappers["system"] = (s_before[len(header):], s_after)
    shape = ChatShape(header, wrappers, generation, default_system)
    _check(tokenizer, shape)
    return shape


def _header_and_system(tokenizer: Any, wrappers: dict[str, tuple[str, str]]
                       ) -> tuple[str, str | None]:
    """What is printed once before the first message (a BOS string), and the system
    prompt the template adds when the conversation starts with the user.

    ``wrappers["system"][0]`` still holds header + the system message's own prefix here."""
    user = _message("user", 1)
    u_before, u_after = wrappers["user"]
    s_before, s_after = wrappers["system"]
    text = _render(tokenizer, [user], False)
    tail = u_before + user["content"] + u_after
    if not text.endswith(tail):
        raise InvalidParameterError("the chat template cannot be converted for Ollama: the "
                                    "first user message prints differently from later ones")
    lead = text[: len(text) - len(tail)]
    if not lead.startswith(s_before) or not lead.endswith(s_after) or lead == "":
        # no default system prompt: what precedes the first user message is the header
        return lead, None
    default = lead[len(s_before): len(lead) - len(s_after)]
    # header + system prefix: the system prefix is shaped like the user prefix
    own = u_before.replace("user", "system")
    header = s_before[: -len(own)] if own and s_before.endswith(own) else ""
    return header, default


def _check(tokenizer: Any, shape: ChatShape) -> None:
    """Rebuild conversations the measurement did not use and compare with Jinja's."""
    convos = [
        [_message("user", 5), _message("assistant", 6), _message("user", 7),
         _message("assistant", 8), _message("user", 9)],
        [_message("system", 4), _message("user", 5), _message("assistant", 6),
         _message("user", 7)],
    ]
    for convo in convos:
        if shape.render(convo) != _render(tokenizer, convo, True):
            raise InvalidParameterError(
                "the chat template cannot be converted for Ollama: its text depends on more "
                "than each message's role")


def stop_strings(shape: ChatShape, tokenizer: Any) -> list[str]:
    """Ollama ``stop`` parameters: the special tokens the template prints around messages
    (as Ollama's own chatml.json and llama3-instruct.json list them), else the text after
    an assistant reply; plus the EOS token. The BOS token is not a stop."""
    text = shape.header + "".join(a + b for a, b in shape.wrappers.values()) + shape.generation
    bos = getattr(tokenizer, "bos_token", None)
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t and t != bos]
    specials += [str(t) for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values()
                 if getattr(t, "special", False) and str(t) != bos]
    found = sorted({t for t in specials if t in text}, key=text.index)
    if not found and shape.wrappers["assistant"][1].strip():
        found = [shape.wrappers["assistant"][1].strip()]
    eos = getattr(tokenizer, "eos_token", None)
    if isinstance(eos, str) and eos and eos not in found and eos != bos:
        found.append(eos)
    return found
