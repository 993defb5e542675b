"""Fine-tune recipes judged on text the model has not seen: the text that FOLLOWS.

For each kind of text, a document of ``--size`` / 0.8 tokens is cut (at a line border)
into its first 80 % -- the training file, given to a real fine-tune job
(``prepare_run`` + ``run_job``, 40 steps, the default model, CPU) -- and its final 20 %,
which no run sees and early stopping cannot look at. The following text is scored
before and after training (plain text: sliding-window perplexity, window 256 / stride
128; chat rows: perplexity of the assistant's tokens given each row's prompt), which is
how a user judges a fine-tune. The run's own held-out figure is recorded beside it.

Five kinds of text that ship with Python or Debian (none written by us). At ~6k training
tokens (``--size 6000``, 7.5k tokens cut):

* ``prose``: IDLE's user guide (``idlelib/help.html``, its text read by slmchat's reader);
* ``notes``: IDLE's change notes (``idlelib/NEWS.txt``: dated, bulleted entries);
* ``licence``: the GNU GPL v3 (``/usr/share/common-licenses/GPL-3``);
* ``code``: Python source (``argparse.py`` from the standard library);
* ``chat``: chat JSONL built from the Python reference (``pydoc_data.topics``): the user
  asks about a topic, the assistant answers with the reference's own text; rows are
  trained with the prompt masked, the final 20 % of rows are the following text.

Those are too short for ~60k training tokens (``--size 60000``, 75k tokens cut), which
reads longer texts of the same kinds, each starting with the 6k one where it can:

* ``prose``: IDLE's user guide, then the GNU sed manual, then the GNU grep manual
  (``/usr/share/info/{sed,grep}.info.gz``, index nodes dropped); the following text is
  the end of the grep manual;
* ``notes``: IDLE's NEWS.txt, then dpkg's Debian changelog
  (``/usr/share/doc/dpkg/changelog.gz``: dated, bulleted release entries);
* ``licence``: a manual (all 14 Debian licences together hold ~53k tokens, too few): the
  GNU Coreutils manual (``/usr/share/info/coreutils.info.gz``), its first 75k tokens;
* ``code``: ``argparse.py``, ``subprocess.py``, ``dataclasses.py``, ``typing.py`` in that
  order (the following text is in ``dataclasses.py`` and ``typing.py``);
* ``chat``: the same Python reference topics, every topic whole: its paragraphs in rows of
  ~1,200 characters, the later rows asking for "(part 2)", "(part 3)", ...

    python benchmarks/bench_finetune_recipe.py --label new-default
    python benchmarks/bench_finetune_recipe.py --label lr2e-4 --set lr=2e-4 --texts prose
    python benchmarks/bench_finetune_recipe.py --table        # print the stored table

Each invocation runs one recipe (defaults, changed by ``--set key=value``) on the chosen
texts and merges its rows into ``benchmarks/results/finetune_recipe.json`` (keyed by
label, size and text, with the code's commit, so recipes measured on earlier code stay
comparable); ``--table`` prints every stored label side by side. One run of the default
model takes minutes on a small CPU: see the README for what was run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see runs.spawn)

RESULTS = Path(__file__).parent / "results" / "finetune_recipe.json"
TRAIN_SHARE = 0.8
STEPS = 40


def _stdlib(name: str) -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"]) / name


def _read(path: Path) -> str:
    """A text file, gzip-compressed (Debian's docs) or not."""
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8")


def _info(name: str) -> str:
    """A GNU info manual from /usr/share/info, its nodes in order without their separator
    bytes, the index nodes (lists of "* term: node. (line N)") and the tag table."""
    import re

    nodes = _read(Path("/usr/share/info") / name).split("\x1f")
    keep = [n for n in nodes
            if not re.search(r"Node: [^,\n]*Index|^\nTag Table:|^\nEnd Tag Table", n)]
    return "".join(keep)


def _prose() -> str:
    from slmchat.engine.retrieval.readers import html_blocks

    html = _stdlib("idlelib/help.html").read_text(encoding="utf-8")
    return "\n\n".join(b.text for b in html_blocks(html))


def _prose_large() -> str:
    return "\n\n".join([_prose(), _info("sed.info.gz"), _info("grep.info.gz")])


def _notes() -> str:
    return _stdlib("idlelib/NEWS.txt").read_text(encoding="utf-8")


def _notes_large() -> str:
    return "\n\n".join([_notes(), _read(Path("/usr/share/doc/dpkg/changelog.gz"))])


def _licence() -> str:
    return Path("/usr/share/common-licenses/GPL-3").read_text(encoding="utf-8")


def _manual_large() -> str:
    return _info("coreutils.info.gz")


CODE_LARGE = ("argparse.py", "subprocess.py", "dataclasses.py", "typing.py")


def _code() -> str:
    return _stdlib("argparse.py").read_text(encoding="utf-8")


def _code_large() -> str:
    return "\n\n".join(_stdlib(n).read_text(encoding="utf-8") for n in CODE_LARGE)


def _chat_rows(whole: bool = False) -> list[dict[str, Any]]:
    """One row per reference topic: a question and the topic's opening paragraphs (up to
    ~1,200 characters). ``whole``: every paragraph of every topic, in rows of ~1,200
    characters, the later ones asking for part 2, 3, ... of the topic."""
    from pydoc_data.topics import topics

    rows = []
    for key in sorted(topics):
        paras = [p.strip() for p in str(topics[key]).split("\n\n") if p.strip()]
        parts: list[list[str]] = [[]]
        size = 0
        for p in paras:
            if size + len(p) > 1200 and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append(p)
            size += len(p)
        for n, answer in enumerate(parts if whole else parts[:1], start=1):
            ask = f"What does the Python reference say about {key}?"
            rows.append({"messages": [
                {"role": "user", "content": ask if n == 1 else f"{ask} (part {n})"},
                {"role": "assistant", "content": "\n\n".join(answer)}]})
    return rows


def _chat_rows_large() -> list[dict[str, Any]]:
    return _chat_rows(whole=True)


# The ~6k-token size reads the first texts; from LARGE_FROM training tokens on, the
# texts below, which are longer versions of the same kinds (the shorter ones do not
# hold 75k tokens: IDLE's guide has ~10k, NEWS.txt ~16k, GPL-3 ~8k, argparse.py ~22k,
# the reference's topic openings ~27k; all 14 Debian licences together ~53k).
TEXTS: dict[str, tuple[str, Callable[[], Any]]] = {
    "prose": ("IDLE user guide (help.html)", _prose),
    "notes": ("IDLE change notes (NEWS.txt)", _notes),
    "licence": ("GNU GPL v3", _licence),
    "code": ("argparse.py (Python source)", _code),
    "chat": ("chat JSONL from the Python reference", _chat_rows),
}
LARGE_FROM = 20000
TEXTS_LARGE: dict[str, tuple[str, Callable[[], Any]]] = {
    "prose": ("IDLE user guide, then the GNU sed and grep manuals (info)", _prose_large),
    "notes": ("IDLE NEWS.txt, then dpkg's Debian changelog", _notes_large),
    "licence": ("manual: GNU Coreutils manual (coreutils.info)", _manual_large),
    "code": ("Python source: " + ", ".join(CODE_LARGE), _code_large),
    "chat": ("chat JSONL from the Python reference, every topic whole (rows of "
             "~1,200 characters)", _chat_rows_large),
}


def texts_for(size: int) -> dict[str, tuple[str, Callable[[], Any]]]:
    return TEXTS_LARGE if size >= LARGE_FROM else TEXTS


# --- building the (training file, following text) pair of a kind ------------------------

def _row_tokens(tok: Any, row: dict[str, Any]) -> int:
    from slmchat.engine.finetune.masking import chat_messages, masked_ids

    return len(masked_ids(tok, chat_messages(row["messages"]))[0]) + 1


def cut_text(text: str, tok: Any, size: int) -> tuple[str, str, int, int] | None:
    """(training text, following text, their tokens) for ``size`` training tokens, cut
    at line borders; None when the text is too short."""
    total = math.ceil(size / TRAIN_SHARE)
    lines = text.splitlines(keepends=True)
    counts = [len(tok(line, add_special_tokens=False)["input_ids"]) for line in lines]
    if sum(counts) < total:
        return None
    used = cut = 0
    for i, n in enumerate(counts):
        if used >= size and not cut:
            cut = i
        used += n
        if used >= total:
            return ("".join(lines[:cut]), "".join(lines[cut:i + 1]),
                    sum(counts[:cut]), sum(counts[cut:i + 1]))
    return None


def cut_rows(rows: list[dict[str, Any]], tok: Any, size: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int] | None:
    total = math.ceil(size / TRAIN_SHARE)
    counts = [_row_tokens(tok, r) for r in rows]
    if sum(counts) < total:
        return None
    used = cut = 0
    for i, n in enumerate(counts):
        if used >= size and not cut:
            cut = i
        used += n
        if used >= total:
            return rows[:cut], rows[cut:i + 1], sum(counts[:cut]), sum(counts[cut:i + 1])
    return None


# --- scoring the following text ---------------------------------------------------------

def text_ppl(model: Any, tok: Any, text: str) -> float:
    from slmchat.engine.tools.perplexity import perplexity

    return perplexity(model, tok, text, window=256, stride=128).perplexity


def chat_ppl(model: Any, tok: Any, rows: list[dict[str, Any]]) -> float:
    """Perplexity of the assistant's tokens of each row, given the row's prompt."""
    import torch

    from slmchat.engine.finetune.masking import chat_messages, masked_ids

    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, mask = masked_ids(tok, chat_messages(row["messages"]))
            x = torch.tensor([ids])
            labels = torch.where(torch.tensor([mask], dtype=torch.bool), x,
                                 torch.full_like(x, -100))
            n = int(sum(mask[1:]))
            if n:
                nll += float(model(input_ids=x, labels=labels).loss) * n
                count += n
    return math.exp(nll / max(1, count))


# --- one run ----------------------------------------------------------------------------

def prepare_pair(name: str, tok: Any, size: int, work: Path) -> dict[str, Any] | None:
    title, reader = texts_for(size)[name]
    try:
        source = reader()
    except OSError as exc:  # a Debian doc file this machine does not have
        print(f"{name}: {exc}; skipped", flush=True)
        return None
    if name == "chat":
        cut = cut_rows(source, tok, size)
        if cut is None:
            return None
        train_rows, follow_rows, n_train, n_follow = cut
        data = work / f"{name}-{size}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in train_rows), encoding="utf-8")
        follow: Any = follow_rows
    else:
        cut_t = cut_text(source, tok, size)
        if cut_t is None:
            return None
        train, follow, n_train, n_follow = cut_t
        data = work / f"{name}-{size}.txt"
        data.write_text(train, encoding="utf-8")
    return {"text": name, "title": title, "data": data, "follow": follow,
            "train_tokens": n_train, "following_tokens": n_follow}


def score(model: Any, tok: Any, pair: dict[str, Any]) -> float:
    return (chat_ppl(model, tok, pair["follow"]) if pair["text"] == "chat"
            else text_ppl(model, tok, pair["follow"]))


def run_one(pair: dict[str, Any], model_dir: Path, overrides: dict[str, Any], work: Path,
            before: float) -> dict[str, Any]:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.job import run_job
    from slmchat.engine.finetune.plan import prepare_run
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    name = pair["text"]
    out = work / f"{name}-out"
    args = TrainArgs(data=str(pair["data"]), model=str(model_dir), max_steps=STEPS,
                     device="cpu", out=str(out))
    for key, value in overrides.items():
        setattr(args, key, value)
    run_dir = prepare_run(args, work / f"{name}-run")
    t0 = time.perf_counter()
    status = run_job(run_dir)
    wall = time.perf_counter() - t0
    if status.get("state") != "done":
        raise SystemExit(f"{name}: the run ended {status.get('state')}: {status.get('message')}")
    m = status["metrics"]
    data = json.loads((out / "slmchat-train.json").read_text())["data"]
    tuned = load(ModelSpec(path=str(out), dtype="fp32", device="cpu"))
    after = score(tuned.model, tuned.tokenizer, pair)
    epochs = STEPS * args.batch_size * args.grad_accum / max(1, data["train_blocks"])
    return {
        "text": name, "title": pair["title"], "train_tokens": pair["train_tokens"],
        "following_tokens": pair["following_tokens"], "block_size": data["block_size"],
        "train_blocks": data["train_blocks"], "eval_blocks": data["eval_blocks"],
        "epochs": epochs, "steps_run": m.get("last_step"), "result_step": m.get("result_step"),
        "stopped_early_at": m.get("stopped_early_at"),
        "job_ppl_before": m.get("perplexity_before"), "job_ppl_after": m.get("perplexity_after"),
        "following_ppl_before": before, "following_ppl_after": after,
        "following_change_pct": 100 * (after - before) / before, "wall_s": wall,
    }


def parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def code_version() -> str:
    import slmchat

    where = Path(slmchat.__file__).parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "slmchat"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SLMCHAT_CODE", "unknown")


def load_report() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}, "before": {}}


def write_report(report: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str))


def recipe(ns: argparse.Namespace) -> int:
    import torch

    from slmchat.engine.devices import configure_threads, cpu_info
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.plan import load_tokenizer
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    threads = configure_threads()
    model_dir = ensure_default_model()
    tok = load_tokenizer(str(model_dir))
    overrides = {kv.split("=", 1)[0]: parse_value(kv.split("=", 1)[1]) for kv in ns.set}
    effective = {**TrainArgs(data="x").to_dict(), "max_steps": STEPS, **overrides}
    code = code_version()
    for name in ns.texts.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            pair = prepare_pair(name, tok, ns.size, Path(tmp))
            if pair is None:
                print(f"{name}: no text of {ns.size / TRAIN_SHARE:.0f} tokens; skipped",
                      flush=True)
                continue
            report = load_report()
            key = f"{ns.size}/{name}"
            if key not in report.setdefault("before", {}):
                base = load(ModelSpec(path=str(model_dir), dtype="fp32", device="cpu"))
                report["before"][key] = score(base.model, base.tokenizer, pair)
                del base
                write_report(report)
            row = run_one(pair, model_dir, overrides, Path(tmp), report["before"][key])
        row.update(code=code, date=time.strftime("%Y-%m-%d %H:%M:%S"),
                   load_avg_1m=os.getloadavg()[0])
        print(f"{ns.label:14s} {name:8s} following ppl {row['following_ppl_before']:7.2f} -> "
              f"{row['following_ppl_after']:7.2f} ({row['following_change_pct']:+.1f} %); "
              f"run's held-out {row['job_ppl_before']:.2f} -> {row['job_ppl_after']:.2f}; "
              f"block {row['block_size']}, {row['train_blocks']}+{row['eval_blocks']} blocks, "
              f"{row['epochs']:.1f} epochs, result step {row['result_step']}; "
              f"{row['wall_s']:.0f} s", flush=True)
        report = load_report()  # merged: another invocation may have written meanwhile
        entry = report.setdefault("runs", {}).setdefault(ns.label, {})
        entry["recipe"] = {k: effective.get(k) for k in (
            "method", "lr", "lora_r", "lora_alpha", "block_size", "batch_size", "max_steps",
            "warmup_ratio", "eval_fraction", "early_stop_patience")}
        entry["overrides"] = overrides
        entry.setdefault("rows", {})[f"{ns.size}/{name}"] = row
        report["machine"] = {"cpu": cpu_info()["model"], "threads": threads,
                             "torch": torch.__version__}
        write_report(report)
    table(ns.labels)
    return 0


def table(labels: str | None = None) -> None:
    """Every stored label, side by side: following-text perplexity change per text."""
    report = load_report()
    names = labels.split(",") if labels else list(report.get("runs", {}))
    runs = {n: report["runs"][n] for n in names if n in report.get("runs", {})}
    keys = sorted({k for r in runs.values() for k in r.get("rows", {})},
                  key=lambda k: (int(k.split("/")[0]), list(TEXTS).index(k.split("/")[1])))
    head = f"{'size/text':16s} {'ppl before':>10s} " + " ".join(f"{n:>22s}" for n in runs)
    print(head)
    for key in keys:
        cells = []
        for r in runs.values():
            row = r.get("rows", {}).get(key)
            cells.append(f"{row['following_ppl_after']:8.2f} ({row['following_change_pct']:+6.1f} %)"
                         if row else "-")
        before = report.get("before", {}).get(key)
        print(f"{key:16s} {before if before is None else round(before, 2)!s:>10s} "
              + " ".join(f"{c:>22s}" for c in cells))
    means = []
    for r in runs.values():
        vals = [r["rows"][k]["following_change_pct"] for k in keys if k in r.get("rows", {})]
        means.append(f"{sum(vals) / len(vals):+.1f} % (n={len(vals)})" if vals else "-")
    print(f"{'mean change':16s} {'':>10s} " + " ".join(f"{c:>22s}" for c in means))
    print(f"(JSON: {RESULTS})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", default=",".join(TEXTS))
    parser.add_argument("--size", type=int, default=6000, help="training tokens (~6000 or "
                        "~60000); the following text is a quarter of that")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainArgs field (e.g. lr=2e-4)")
    parser.add_argument("--label", default="default")
    parser.add_argument("--table", action="store_true", help="print the stored table only")
    parser.add_argument("--labels", default=None, help="labels in the table (comma list)")
    ns = parser.parse_args()
    if ns.table:
        table(ns.labels)
        return 0
    from slmchat.engine.offline import ensure_offline

    ensure_offline()
    return recipe(ns)


if __name__ == "__main__":
    sys.exit(main())
