"""``slmchat generate PROMPT``: stream one reply to stdout."""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
from pathlib import Path

from slmchat.commands.common import (
    add_model_args,
    model_line,
    prepare_default_model,
    spec_from_args,
)
from slmchat.commands.context_files import add_context_args, augment, index_paths, print_sources
from slmchat.errors import InvalidParameterError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a reply to PROMPT and stream it to stdout",
                       description="Generate a reply to PROMPT ('-' reads stdin).")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    add_model_args(p)
    add_sampling_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--raw", action="store_true",
                   help="plain completion of the prompt text, no chat template")
    p.add_argument("--stats", action="store_true",
                   help="print a last 'stats ...' line to stderr")
    p.add_argument("--think", action=argparse.BooleanOptionalAction, default=None,
                   help="thinking models: turn the reasoning on or off (enable_thinking in "
                        "the chat template; default: the template's). The reasoning goes "
                        "to stderr, the answer to stdout")
    c = p.add_argument_group("output constraints (decoding follows them; the reply always parses)")
    c.add_argument("--json", action="store_true", help="the reply is a JSON object")
    c.add_argument("--json-schema", metavar="FILE", default=None,
                   help="the reply is JSON valid against this JSON schema file")
    c.add_argument("--regex", metavar="RE", default=None, help="the reply matches this regex")
    c.add_argument("--grammar", metavar="FILE.lark", default=None,
                   help="the reply follows this Lark grammar (llguidance's dialect)")
    c.add_argument("--choice", metavar="A,B,C", default=None,
                   help="the reply is exactly one of these comma-separated choices")
    add_context_args(p)
    p.set_defaults(func=run)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    from slmchat.engine.generation.sampling import SAMPLING_RANGES

    g = p.add_argument_group("sampling (defaults from settings.toml)")
    for r in SAMPLING_RANGES:
        flags = [f"--{r.name.replace('_', '-')}", *(["-t"] if r.name == "temperature" else [])]
        g.add_argument(*flags, type=r.kind, default=None, metavar=r.kind.__name__.upper(),
                       help=f"{r.describe()}; {r.hint}" if r.hint else r.describe())
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--speculative", metavar="MODE", default=None,
                   help="auto (prompt lookup where verified replies are exactly the plain "
                        "ones: the transformers runtime), off, lookup, or draft[:MODEL] (a "
                        "smaller model with the same vocabulary drafts)")


def speculation_from_args(args: argparse.Namespace):  # -> Speculation
    """--speculative, else settings.generation.speculative (a bad value: one line)."""
    from slmchat.config import load_settings
    from slmchat.engine.generation.speculative import parse

    value = getattr(args, "speculative", None)
    if value is None:
        value = load_settings()[0].generation.speculative
    return parse(value)


def sampling_from_args(args: argparse.Namespace):  # -> SamplingParams
    from slmchat.config import load_settings
    from slmchat.engine.generation.sampling import SamplingParams

    gen, problem = load_settings()
    if problem:
        print(f"slmchat: warning: {problem}", file=sys.stderr)
    g = gen.generation

    def pick(name: str, default: object) -> object:
        value = getattr(args, name, None)
        return default if value is None else value

    params = SamplingParams(
        temperature=float(pick("temperature", g.temperature)),  # type: ignore[arg-type]
        top_p=float(pick("top_p", g.top_p)),  # type: ignore[arg-type]
        top_k=int(pick("top_k", g.top_k)),  # type: ignore[call-overload]
        min_p=float(pick("min_p", g.min_p)),  # type: ignore[arg-type]
        repetition_penalty=float(pick("repetition_penalty", g.repetition_penalty)),  # type: ignore[arg-type]
        max_new_tokens=int(pick("max_new_tokens", g.max_new_tokens)),  # type: ignore[call-overload]
        seed=pick("seed", g.seed),  # type: ignore[arg-type]
        stop=tuple(args.stop or ()),
    )
    return params.validate()


class _ProgressLine:
    """One status line on stderr for a one-time conversion: rewritten in place on a
    terminal, only its first and last messages otherwise (logs stay short)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, message: str, fraction: float) -> None:
        if self.tty:
            end = "\n" if fraction >= 1.0 else ""
            sys.stderr.write(f"\r\x1b[2Kslmchat: [{fraction * 100:3.0f}%] {message}{end}")
            sys.stderr.flush()
        elif not self.shown or fraction >= 1.0:
            print(f"slmchat: {message}", file=sys.stderr, flush=True)
        self.shown = True


def constraint_from_args(args: argparse.Namespace):  # -> Constraint | None
    """The one output constraint the flags ask for, compiled once to check it (a bad
    schema, regex or grammar is one line before the model loads)."""
    from slmchat.engine.fsutil import read_text_file
    from slmchat.engine.generation.constraints import Constraint

    given = [name for name in ("json", "json_schema", "regex", "grammar", "choice")
             if getattr(args, name, None)]
    if len(given) > 1:
        raise InvalidParameterError("give one of --json, --json-schema, --regex, --grammar, --choice")
    if not given:
        return None
    kind = given[0]
    if kind == "json":
        constraint = Constraint("json")
    elif kind == "choice":
        constraint = Constraint.choices([c.strip() for c in args.choice.split(",")])
    elif kind == "regex":
        constraint = Constraint("regex", args.regex)
    else:
        path = Path(args.json_schema if kind == "json_schema" else args.grammar)
        text = read_text_file(path, what="--json-schema" if kind == "json_schema" else "--grammar")
        constraint = Constraint("json_schema" if kind == "json_schema" else "lark", text)
    constraint.check()
    return constraint


def run(args: argparse.Namespace) -> int:
    from slmchat.engine.generation.prompting import ChatMessage, PromptMode
    from slmchat.engine.session import Engine

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise InvalidParameterError("the prompt is empty")
    params = sampling_from_args(args)  # validate before the (slow) model load
    constraint = constraint_from_args(args)
    speculation = speculation_from_args(args)
    spec = spec_from_args(args)
    if args.context and args.raw:
        raise InvalidParameterError("--context answers in chat mode; drop --raw")
    docs = index_paths(args.context) if args.context else None
    prepare_default_model(spec)
    # Threads are set per reply by the engine (torch's or ONNX Runtime's); setting torch's
    # here would import torch, which a chat on the onnx runtime never needs.
    # start-up: skip transformers (and torch) where the model allows
    engine = Engine(lite=True, speculation=speculation)
    info = engine.load(spec, progress=_ProgressLine())
    line = model_line(args, spec, info.name)  # said once the reply starts (errors: one line)
    for warning in info.warnings:
        print(f"slmchat: warning: {warning}", file=sys.stderr)
    if args.think is not None and not info.thinking_switch:
        flag = "--think" if args.think else "--no-think"
        print(f"slmchat: warning: {info.name}'s chat template has no thinking switch; "
              f"{flag} is ignored", file=sys.stderr)
    messages = []
    system = args.system
    if system:
        messages.append(ChatMessage("system", system))
    messages.append(ChatMessage("user", prompt))
    mode: PromptMode = "raw" if args.raw else "chat"
    augmented = augment(engine, *docs, messages, params, args.context_tokens) if docs else None
    if augmented is not None:
        messages = augmented.messages
    last = None
    thought = False
    for last in engine.stream_chat(messages, params, mode=mode, constraint=constraint,
                                   thinking=args.think):
        if line is not None:
            print(line, file=sys.stderr)
            line = None
        if last.reasoning:  # stderr: a pipe or a file gets the answer alone
            sys.stderr.write(last.reasoning)
            sys.stderr.flush()
            thought = True
        if last.text:
            if thought:
                sys.stderr.write("\n")
                thought = False
            sys.stdout.write(last.text)
            sys.stdout.flush()
    if thought:
        sys.stderr.write("\n")
    sys.stdout.write("\n")
    print_sources(augmented)
    sys.stdout.flush()
    if last is not None and last.warning:  # e.g. a damaged ONNX copy, rebuilt next time
        print(f"slmchat: warning: {last.warning}", file=sys.stderr)
    if last is not None and last.finish_reason == "error":
        print(f"slmchat: error: generation failed: {last.error}", file=sys.stderr)
        return 1
    if args.stats and last is not None:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"stats prompt_tokens={last.prompt_tokens} new_tokens={last.new_tokens} "
            f"ttft_s={(last.ttft_s or 0):.3f} prefill_tok_s={last.prefill_tps:.1f} "
            f"decode_tok_s={last.decode_tps:.2f} peak_rss_mb={peak_mb:.0f} "
            + (f"reasoning_tokens={last.reasoning_tokens} " if last.reasoning_tokens else "")
            + f"finish={last.finish_reason} seed={last.seed} runtime={info.runtime} "
            f"precision={info.dtype}{'' if info.quant == 'none' else '/' + info.quant} "
            + (f"constraint={last.constraint} " if last.constraint else "")
            + f"speculative={last.speculative or 'off'} drafted={last.drafted} "
            f"accepted={last.accepted} "
            + f"model={shlex.quote(spec.path)}",
            file=sys.stderr,
        )
    return 0
