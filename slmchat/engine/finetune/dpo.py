"""Preference tuning (DPO) on (prompt, chosen, rejected) pairs, inside the plain loop.

The pairs file is JSONL in TRL's conversational preference format, which
``slmchat export-chats --pairs`` writes from marks and edits::

    {"prompt": [{"role": "user", "content": ...}, ...],
     "chosen": [{"role": "assistant", "content": ...}],
     "rejected": [{"role": "assistant", "content": ...}]}

(``prompt``/``chosen``/``rejected`` may also be plain strings.) The loss is DPO's sigmoid
loss (Rafailov et al. 2023; TRL's ``loss_type="sigmoid"``): ``-log σ(β((log πθ(c) -
log πref(c)) - (log πθ(r) - log πref(r))))`` over the reply tokens, where the reference
is the base model: the LoRA adapter switched off (what TRL does for a PEFT model), so no
second copy of the weights is held. TRL's DPOTrainer itself is not used: it is a
``transformers.Trainer`` with its own checkpoints, data pipeline and resume, while a run
here is a run folder (step-numbered pickle-free checkpoints, progress.jsonl, resume after
kill -9, early stop, the panel's chart) that job.py drives for every method.

Held-out pairs (whole prompts, chosen by a hash so a prompt's pairs stay together) give
the early-stopping loss and the **preference share**: the fraction of pairs where the
model gives the preferred reply the higher log-probability.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.engine.finetune.args import TrainArgs, TrainError, lr_at
from slmchat.engine.finetune.data import DataPreview, data_files, data_sha256
from slmchat.engine.fsutil import read_text_file
from slmchat.errors import DataError

REFERENCE = "dpo-reference.json"  # the base model's log-probabilities, once per run


@dataclass(frozen=True)
class Pair:
    prompt: tuple[dict[str, str], ...]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PairTokens:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


@dataclass
class PreparedPairs:
    train: list[PairTokens]
    eval: list[PairTokens]
    preview: DataPreview


def _messages(value: Any, where: str, what: str) -> tuple[dict[str, str], ...]:
    if isinstance(value, str):
        return ({"role": "user" if what == "prompt" else "assistant", "content": value},)
    ok = isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str)
        and isinstance(m.get("content"), str) for m in value)
    if not ok:
        raise DataError(f"{where}: '{what}' must be a string or a non-empty list of "
                        "{'role': ..., 'content': ...} objects")
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _reply(value: Any, where: str, what: str) -> str:
    msgs = _messages(value, where, what)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant" or not msgs[0]["content"].strip():
        raise DataError(f"{where}: '{what}' must be one non-empty assistant reply")
    return msgs[0]["content"]


def _pair(where: str, line: str) -> Pair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict) or not {"prompt", "chosen", "rejected"} <= set(row):
        raise DataError(f"{where}: a preference row needs 'prompt', 'chosen' and 'rejected' "
                        "(write them with: slmchat export-chats --pairs)")
    pair = Pair(_messages(row["prompt"], where, "prompt"), _reply(row["chosen"], where, "chosen"),
                _reply(row["rejected"], where, "rejected"))
    if pair.chosen == pair.rejected:
        raise DataError(f"{where}: 'chosen' and 'rejected' are the same reply")
    return pair


def load_pairs(path: str | Path) -> tuple[list[Pair], list[Path], int]:
    """(pairs, files, bytes) from a .jsonl file or a folder of them; DataError if none."""
    root = Path(path).expanduser()
    files = [f for f in data_files(root) if f.suffix.lower() == ".jsonl" or root.is_file()]
    pairs: list[Pair] = []
    total = 0
    for file in files:
        text = read_text_file(file, "preference pairs")
        total += len(text.encode("utf-8"))
        pairs += [_pair(f"{file}:{n}", line) for n, line in enumerate(text.splitlines(), 1)
                  if line.strip()]
    if len(pairs) < 2:
        raise DataError(f"{root}: DPO needs at least 2 preference pairs (one is held out); "
                        f"found {len(pairs)}. Mark or edit more replies, then: slmchat "
                        "export-chats --pairs")
    return pairs, files, total


def _prompt_key(pair: Pair) -> str:
    return hashlib.sha256(json.dumps(pair.prompt, sort_keys=True).encode()).hexdigest()


def split_pairs(pairs: Sequence[Pair], eval_fraction: float, seed: int
                ) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): whole prompts, picked by hash (stable as pairs are added), at
    least one pair held out and at least one trained on."""
    keys = sorted({_prompt_key(p) for p in pairs},
                  key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    want = max(1, round(len(pairs) * eval_fraction))
    held: set[str] = set()
    count = 0
    for key in keys[:-1]:  # the last prompt always trains
        if count >= want:
            break
        held.add(key)
        count += sum(1 for p in pairs if _prompt_key(p) == key)
    train = [p for p in pairs if _prompt_key(p) not in held]
    test = [p for p in pairs if _prompt_key(p) in held]
    if not test:  # one prompt with several replies: hold out one of its pairs
        train, test = train[:-1], train[-1:]
    return train, test


def _reply_ids(tokenizer: Any, prompt: tuple[dict[str, str], ...], prompt_text: str,
               reply: str) -> list[int]:
    """The reply's tokens as the chat template ends an assistant turn (its end-of-turn
    token too), or the reply and EOS without a template."""
    from slmchat.engine.generation.prompting import ChatMessage, render

    msgs = [ChatMessage(m["role"], m["content"]) for m in prompt]  # type: ignore[arg-type]
    full, _ = render(tokenizer, [*msgs, ChatMessage("assistant", reply)],
                     generation_prompt=False)
    text = full[len(prompt_text):] if full.startswith(prompt_text) else reply
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    if not full.startswith(prompt_text) and eos is not None:
        ids.append(int(eos))
    return ids


def tokenize_pair(pair: Pair, tokenizer: Any, max_len: int) -> PairTokens:
    """Prompt and both replies as token ids; a long prompt loses its start, a long reply
    its end (TRL's keep_end / truncation), within ``max_len`` per sequence."""
    from slmchat.engine.generation.prompting import ChatMessage, render

    msgs = [ChatMessage(m["role"], m["content"]) for m in pair.prompt]  # type: ignore[arg-type]
    prompt_text, _ = render(tokenizer, msgs, generation_prompt=True)
    prompt = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    chosen = _reply_ids(tokenizer, pair.prompt, prompt_text, pair.chosen)
    rejected = _reply_ids(tokenizer, pair.prompt, prompt_text, pair.rejected)
    reply_max = max(max_len // 2, max_len - len(prompt))
    chosen, rejected = chosen[:reply_max], rejected[:reply_max]
    keep = max_len - max(len(chosen), len(rejected))
    return PairTokens(prompt[-keep:] if keep > 0 else [], chosen, rejected)


PAIR_TOKENS = 256  # prompt + reply of one pair, at most (--block-size)


def prepare_pairs(path: str | Path, tokenizer: Any, block_size: int | None,
                  eval_fraction: float, seed: int) -> PreparedPairs:
    # None (the default): pairs are whole prompts + replies up to PAIR_TOKENS; the block
    # size a plain run picks for a short text does not apply to pairs.
    block_size = block_size or PAIR_TOKENS
    pairs, files, total = load_pairs(path)
    train, test = split_pairs(pairs, eval_fraction, seed)
    tok_train = [tokenize_pair(p, tokenizer, block_size) for p in train]
    tok_eval = [tokenize_pair(p, tokenizer, block_size) for p in test]
    tokens = sum(len(t.prompt) + len(t.chosen) + len(t.rejected) for t in tok_train + tok_eval)
    reply_tokens = sum(len(t.chosen) + len(t.rejected) for t in tok_train)
    preview = DataPreview(
        files=len(files), bytes=total, documents=len(pairs), tokens=tokens,
        block_size=block_size, blocks=len(pairs), train_blocks=len(train),
        eval_blocks=len(test), sha256=data_sha256(path), masked=True,
        trained_tokens=reply_tokens)
    return PreparedPairs(tok_train, tok_eval, preview)


# -- log-probabilities and the loss ------------------------------------------------------

def reply_logps(model: Any, pairs: Sequence[PairTokens], device: str) -> Any:
    """Summed log-probabilities of the chosen and the rejected reply given the prompt:
    a (len(pairs), 2) tensor, both replies of every pair in one padded batch."""
    import torch

    seqs = [(p.prompt, reply) for p in pairs for reply in (p.chosen, p.rejected)]
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    scored = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
    for i, (prompt, reply) in enumerate(seqs):
        n = len(prompt) + len(reply)
        ids[i, :n] = torch.tensor(prompt + reply)
        attn[i, :n] = 1
        # logits at t predict token t + 1: the reply's tokens are predicted from
        # positions len(prompt) - 1 .. n - 2
        scored[i, max(len(prompt) - 1, 0):n - 1] = True
    ids, attn, scored = ids.to(device), attn.to(device), scored.to(device)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logp * scored).sum(-1).view(len(pairs), 2)


def dpo_loss(policy: Any, reference: Any, beta: float) -> tuple[Any, Any]:
    """(mean sigmoid DPO loss, per-pair implicit reward margin) for (N, 2) log-probs."""
    import torch

    margin = beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
    return -torch.nn.functional.logsigmoid(margin).mean(), margin


@contextlib.contextmanager
def _reference_mode(model: Any) -> Iterator[None]:
    """The base model: the LoRA adapter switched off (peft's disable_adapter)."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise TrainError("DPO here trains a LoRA adapter; the reference is the base model "
                         "with the adapter switched off")
    with disable():
        yield


def reference_logps(model: Any, prepared: PreparedPairs, args: TrainArgs, device: str,
                    run_dir: Path | None) -> dict[str, Any]:
    """{"train": (N, 2), "eval": (M, 2)} tensors of the base model, computed once and
    kept in the run folder (a resumed run reads them back)."""
    import torch

    cache = run_dir / REFERENCE if run_dir is not None else None
    sha = prepared.preview.sha256
    if cache is not None and cache.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("sha256") == sha:
                return {k: torch.tensor(data[k], dtype=torch.float32) for k in ("train", "eval")}
    out: dict[str, Any] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad(), _reference_mode(model):
        for split in ("train", "eval"):
            pairs = getattr(prepared, split)
            parts = [reply_logps(model, pairs[i:i + args.batch_size], device).cpu()
                     for i in range(0, len(pairs), args.batch_size)]
            out[split] = torch.cat(parts) if parts else torch.zeros((0, 2))
    if was_training:
        model.train()
    if cache is not None:
        from slmchat.engine.fsutil import write_json_atomic

        write_json_atomic(cache, {"sha256": sha, **{k: v.tolist() for k, v in out.items()}})
    return out


def evaluate_pairs(model: Any, pairs: Sequence[PairTokens], reference: Any, args: TrainArgs,
                   device: str) -> dict[str, float]:
    """Held-out DPO loss, preference share (chosen reply more likely than the rejected
    one) and reward accuracy (the margin over the reference is positive)."""
    import torch

    was_training = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(pairs), args.batch_size):
            parts.append(reply_logps(model, pairs[i:i + args.batch_size], device).cpu())
    if was_training:
        model.train()
    policy = torch.cat(parts)
    loss, margin = dpo_loss(policy, reference, args.dpo_beta)
    return {"loss": float(loss), "pref_share": float((policy[:, 0] > policy[:, 1]).float().mean()),
            "reward_accuracy": float((margin > 0).float().mean())}


def dpo_steps(model: Any, optimizer: Any, prepared: PreparedPairs, reference: Any,
              args: TrainArgs, *, device: str, start_step: int, total: int,
              stopper: Any = None) -> Iterator[dict[str, Any]]:
    """Optimizer steps ``start_step+1 .. total`` on pair batches; a dict after each, in the
    shape of loop.train_steps' rows (the data order is the same pure function of the
    step, so a resumed run sees the same batches)."""
    import torch

    from slmchat.engine.finetune.loop import micro_indices

    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(start_step + 1, total + 1):
        if stopper is not None and stopper.stop:
            return
        t0 = time.perf_counter()
        lr = lr_at(step - 1, total, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses, tokens = [], 0
        for k in range(args.grad_accum):
            rows = micro_indices(args, len(prepared.train), (step - 1) * args.grad_accum + k)
            batch = [prepared.train[i] for i in rows]
            policy = reply_logps(model, batch, device)
            loss, _ = dpo_loss(policy, reference[rows].to(device), args.dpo_beta)
            (loss / args.grad_accum).backward()
            losses.append(float(loss.detach()))
            tokens += sum(len(p.prompt) * 2 + len(p.chosen) + len(p.rejected) for p in batch)
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = sum(losses) / len(losses)
        if not math.isfinite(value):
            raise TrainError(f"the loss became {value} at step {step}; lower --lr and start "
                             "again")
        yield {"step": step, "loss": value, "lr": lr, "tokens": tokens,
               "step_s": time.perf_counter() - t0, "tokens_per_step": tokens}
