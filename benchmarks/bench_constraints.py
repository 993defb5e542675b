"""Structured output on the default model: how often replies parse and validate, with and
without constrained decoding, what the constraint costs in decode speed, and tool calls.

30 JSON schemas of increasing difficulty (flat objects, enums, number ranges, required
fields, nested arrays) each with a prompt asking for that JSON; 20 tool-call prompts over
three offered functions. Greedy, 160 new tokens. Without a constraint the reply counts
when the first {...} in it parses and validates (jsonschema's rules, checked by hand for
the keywords used here); with one it must parse as it is.

Usage: python benchmarks/bench_constraints.py [--out benchmarks/results/constraints.json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props),
            "additionalProperties": False}


S = {"type": "string", "maxLength": 40}
SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("a person's name", _obj({"name": S})),
    ("a city", _obj({"city": S})),
    ("a colour", _obj({"color": S})),
    ("a fruit and its colour", _obj({"fruit": S, "color": S})),
    ("a book title and author", _obj({"title": S, "author": S})),
    ("a person's name and age", _obj({"name": S, "age": {"type": "integer"}})),
    ("a city and country", _obj({"city": S, "country": S})),
    ("a movie and its year", _obj({"movie": S, "year": {"type": "integer"}})),
    ("whether the sky is blue", _obj({"answer": {"type": "boolean"}})),
    ("a temperature in celsius", _obj({"celsius": {"type": "number"}})),
    ("a mood", _obj({"mood": {"enum": ["happy", "sad", "calm"]}})),
    ("a priority", _obj({"priority": {"enum": ["low", "medium", "high"]}})),
    ("a weekday", _obj({"day": {"enum": ["monday", "tuesday", "wednesday", "thursday", "friday"]}})),
    ("a rating from 1 to 5", _obj({"rating": {"type": "integer", "minimum": 1, "maximum": 5}})),
    ("a percentage", _obj({"percent": {"type": "number", "minimum": 0, "maximum": 100}})),
    ("a product with a price", _obj({"product": S, "price": {"type": "number", "minimum": 0}})),
    ("an animal and its legs", _obj({"animal": S, "legs": {"type": "integer", "minimum": 0, "maximum": 8}})),
    ("a task with an optional note", _obj({"task": S, "note": S}, ["task"])),
    ("a user with an email",
     _obj({"user": S, "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"}})),
    ("a date", _obj({"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}})),
    ("three colours", _obj({"colors": {"type": "array", "items": S, "minItems": 3, "maxItems": 3}})),
    ("two fruits", _obj({"fruits": {"type": "array", "items": S, "minItems": 2, "maxItems": 2}})),
    ("a shopping list", _obj({"items": {"type": "array", "items": S, "minItems": 1, "maxItems": 5}})),
    ("a recipe with ingredients", _obj({"name": S, "ingredients": {"type": "array", "items": S,
                                                                     "minItems": 1, "maxItems": 4}})),
    ("a point", _obj({"point": _obj({"x": {"type": "integer"}, "y": {"type": "integer"}})})),
    ("an address", _obj({"address": _obj({"street": S, "city": S})})),
    ("a person with a pet", _obj({"name": S, "pet": _obj({"kind": {"enum": ["cat", "dog"]}, "name": S})})),
    ("two people", _obj({"people": {"type": "array", "minItems": 2, "maxItems": 2,
                                    "items": _obj({"name": S, "age": {"type": "integer", "minimum": 0,
                                                                      "maximum": 120}})}})),
    ("a team", _obj({"team": S, "members": {"type": "array", "minItems": 1, "maxItems": 3,
                                            "items": _obj({"name": S, "role": {"enum": ["lead", "dev"]}})}})),
    ("an order", _obj({"order_id": {"type": "integer", "minimum": 1}, "status": {"enum": ["open", "shipped"]},
                       "lines": {"type": "array", "minItems": 1, "maxItems": 3,
                                 "items": _obj({"sku": S, "qty": {"type": "integer", "minimum": 1,
                                                                  "maximum": 9}})}})),
]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": _obj({"city": S})}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                      "parameters": _obj({"a": {"type": "number"},
                                                          "b": {"type": "number"}})}},
    {"type": "function", "function": {"name": "send_email", "description": "Send an email",
                                      "parameters": _obj({"to": S, "subject": S})}},
]
TOOL_PROMPTS = [(f"What is the weather in {c}?", "get_weather") for c in
                ("Paris", "Tokyo", "Berlin", "Rome", "Madrid", "Oslo", "Cairo")] + \
               [(f"What is {a} plus {b}?", "add") for a, b in
                ((2, 3), (10, 5), (7, 8), (1, 1), (12, 30), (100, 1), (4, 4))] + \
               [(f"Send an email to {n} about {s}.", "send_email") for n, s in
                (("Ann", "lunch"), ("Bob", "the meeting"), ("Cleo", "holidays"), ("Dan", "the report"),
                 ("Eve", "tickets"), ("Finn", "a party"))]


def valid(value: Any, schema: dict[str, Any]) -> bool:
    """The JSON schema keywords used above, checked by hand."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict) or any(k not in value for k in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(valid(v, props[k]) for k, v in value.items() if k in props)
    if kind == "array":
        return isinstance(value, list) and schema.get("minItems", 0) <= len(value) <= \
            schema.get("maxItems", 10**9) and all(valid(v, schema["items"]) for v in value)
    if kind == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", 10**9) and \
            (re.search(schema["pattern"], value) is not None if "pattern" in schema else True)
    if kind in ("integer", "number"):
        ok = isinstance(value, int) if kind == "integer" else isinstance(value, int | float)
        return ok and not isinstance(value, bool) and schema.get("minimum", -1e18) <= value <= \
            schema.get("maximum", 1e18)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def first_json(text: str) -> Any:
    start = text.find("{")
    while start >= 0:
        for end in range(len(text), start, -1):
            if text[end - 1] == "}":
                try:
                    return json.loads(text[start:end])
                except ValueError:
                    continue
        start = text.find("{", start + 1)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "constraints.json"))
    args = ap.parse_args()
    from slmchat.engine.generation.constraints import Constraint
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.session import Engine
    from slmchat.server.requests import with_tools
    from slmchat.server.tools import parse_tools, read_call

    engine = Engine()
    info = engine.load(ModelSpec())
    params = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=160)
    rows: dict[str, Any] = {"runtime": info.runtime, "schemas": []}
    tps: dict[str, list[float]] = {"free": [], "constrained": []}
    compile_s: list[float] = []
    for what, schema in SCHEMAS:
        ask = [ChatMessage("user", f"Reply with JSON only, following this JSON schema: "
                                   f"{json.dumps(schema)}. Give {what}.")]
        free = list(engine.stream_chat(ask, params))
        t = time.perf_counter()
        constraint = Constraint("json_schema", json.dumps(schema))
        constraint.check()
        compile_s.append(time.perf_counter() - t)
        held = list(engine.stream_chat(ask, params, constraint=constraint))
        free_text = "".join(c.text for c in free)
        held_text = "".join(c.text for c in held)
        free_obj = first_json(free_text)
        try:
            held_obj = json.loads(held_text)
        except ValueError:
            held_obj = None
        tps["free"].append(free[-1].decode_tps)
        tps["constrained"].append(held[-1].decode_tps)
        rows["schemas"].append({"what": what, "free_ok": free_obj is not None and valid(free_obj, schema),
                                "constrained_ok": held_obj is not None and valid(held_obj, schema),
                                "free": free_text[:200], "constrained": held_text[:200]})
    tool_rows = []
    plan = parse_tools(TOOLS, "required")
    assert plan is not None
    for prompt, want in TOOL_PROMPTS:
        ask = with_tools([ChatMessage("user", prompt)], plan)
        free = "".join(c.text for c in engine.stream_chat(ask, params))
        held = "".join(c.text for c in engine.stream_chat(ask, params, constraint=plan.constraint()))
        got_free, got_held = read_call(first_json_text(free), plan), read_call(held, plan)
        tool_rows.append({"prompt": prompt, "want": want,
                          "free_right": got_free is not None and got_free[0] == want,
                          "free_well_formed": got_free is not None,
                          "constrained_right": got_held is not None and got_held[0] == want,
                          "constrained_well_formed": got_held is not None})
    rows["tools"] = tool_rows
    n = len(SCHEMAS)
    summary = {
        "schemas": n, "free_valid": sum(r["free_ok"] for r in rows["schemas"]),
        "constrained_valid": sum(r["constrained_ok"] for r in rows["schemas"]),
        "free_decode_tok_s": sorted(tps["free"])[n // 2],
        "constrained_decode_tok_s": sorted(tps["constrained"])[n // 2],
        "compile_ms_median": sorted(compile_s)[n // 2] * 1000, "compile_ms_max": max(compile_s) * 1000,
        "tool_prompts": len(tool_rows),
        "tools_free_well_formed": sum(r["free_well_formed"] for r in tool_rows),
        "tools_free_right": sum(r["free_right"] for r in tool_rows),
        "tools_constrained_well_formed": sum(r["constrained_well_formed"] for r in tool_rows),
        "tools_constrained_right": sum(r["constrained_right"] for r in tool_rows),
    }
    rows["summary"] = summary
    print(f"| default model, {info.runtime} | without constraint | with constraint |")
    print("|---|---|---|")
    print(f"| replies that parse and validate ({n} schemas) | {summary['free_valid']} | "
          f"{summary['constrained_valid']} |")
    print(f"| decode tok/s (median) | {summary['free_decode_tok_s']:.1f} | "
          f"{summary['constrained_decode_tok_s']:.1f} |")
    print(f"| well-formed tool calls ({len(tool_rows)} prompts) | {summary['tools_free_well_formed']} | "
          f"{summary['tools_constrained_well_formed']} |")
    print(f"| ... to the right function | {summary['tools_free_right']} | "
          f"{summary['tools_constrained_right']} |")
    print(f"schema compile: median {summary['compile_ms_median']:.1f} ms, "
          f"max {summary['compile_ms_max']:.1f} ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


def first_json_text(text: str) -> str:
    obj = first_json(text)
    return json.dumps(obj) if obj is not None else ""


if __name__ == "__main__":
    raise SystemExit(main())
