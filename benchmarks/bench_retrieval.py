"""Retrieval, measured honestly: recall@k of the BM25 retriever and the default model's
answer rate with and without retrieval, on real documents that ship on this machine.

The corpus (nothing in it written by us) is built into a temp folder:

* man pages rendered to text by ``man`` (coreutils, grep, tar, gzip, find, curl, and
  fstab/gitignore/passwd from section 5, plus more coreutils pages as distractors);
* licence texts from /usr/share/common-licenses (Apache-2.0, MPL-2.0, GPL-3);
* a PDF (the shared MIME-info specification) and HTML pages (libffi's manual, Debian's
  users-and-groups, IDLE's help.html that ships with CPython);
* Python source files (textwrap.py, shutil.py from the standard library).

``benchmarks/data/retrieval_questions.json`` holds 35 questions, each with the file and a
phrase of the passage that answers it and regular expressions an answer must match. A
question whose document is missing on this machine is skipped and counted as such.

recall@k: the expected passage (the phrase, whitespace-normalised) is in one of the top
k chunks from the expected file. The answer rate runs the default model greedily (48 new
tokens) on the question alone and with the retrieved passages in the prompt.

    python benchmarks/bench_retrieval.py [--no-model] [--limit N]

Prints tables and writes ``benchmarks/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
QUESTIONS = HERE / "data" / "retrieval_questions.json"
RESULTS = HERE / "results" / "retrieval.json"
MAN_PAGES = [("1", p) for p in ("gzip", "tar", "grep", "find", "cp", "ls", "chmod", "date",
                                "du", "curl", "cat", "mv", "rm", "mkdir", "head", "tail",
                                "sort", "uniq", "wc", "xargs", "chown", "ln", "touch")]
MAN_PAGES += [("5", p) for p in ("fstab", "gitignore", "passwd")]
LICENCES = ("Apache-2.0", "MPL-2.0", "GPL-3")
KS = (1, 3, 5)


def build_corpus(root: Path) -> dict[str, str]:
    """Copy/render the documents into ``root``; returns {name: why missing} for gaps."""
    missing: dict[str, str] = {}
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"}
    for section, page in MAN_PAGES:
        name = f"{page}.{section}.txt"
        try:
            raw = subprocess.run(["man", "-E", "ascii", section, page], capture_output=True,
                                 env=env, timeout=60, check=True).stdout
            text = subprocess.run(["col", "-bx"], input=raw, capture_output=True,
                                  timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            missing[name] = "man page not installed"
            continue
        (root / name).write_bytes(text)
    copies = {f"{lic}": Path("/usr/share/common-licenses") / lic for lic in LICENCES}
    copies["shared-mime-info-spec.pdf"] = Path(
        "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")
    copies["users-and-groups.html"] = Path("/usr/share/doc/base-passwd/users-and-groups.html")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    copies["idle-help.html"] = stdlib / "idlelib" / "help.html"
    copies["textwrap.py"] = stdlib / "textwrap.py"
    copies["shutil.py"] = stdlib / "shutil.py"
    for name, src in copies.items():
        if src.is_file():
            shutil.copyfile(src, root / name)
        else:
            missing[name] = f"{src} not found"
    libffi = Path("/usr/share/doc/libffi8/html")
    if libffi.is_dir():
        for page in sorted(libffi.glob("*.html")):
            shutil.copyfile(page, root / f"libffi-{page.name}")
    else:
        missing["libffi-The-Basics.html"] = f"{libffi} not found"
    return missing


def norm(text: str) -> str:
    return " ".join(text.split())


def rank_of(hits: list[Any], q: dict[str, Any]) -> int | None:
    """1-based rank of the first hit holding the expected passage, or None."""
    needle = norm(q["needle"])
    for i, h in enumerate(hits, 1):
        if Path(h.path).name == q["file"] and needle in norm(h.text):
            return i
    return None


def recall_table(corpus: Path, questions: list[dict[str, Any]], work: Path) -> list[dict]:
    """recall@k and MRR for a few chunk sizes and title weights (no model needed)."""
    from slmchat.engine.retrieval.index import DocumentIndex

    rows = []
    for max_chars in (500, 1000, 1500):
        index = DocumentIndex(work / f"index-{max_chars}.db", max_chars=max_chars)
        t0 = time.perf_counter()
        report = index.index([corpus])
        index_s = time.perf_counter() - t0
        for title_weight in (1.0, 2.0, 4.0):
            ranks = []
            t1 = time.perf_counter()
            for q in questions:
                hits = index.search(q["q"], [str(corpus.resolve())], k=10,
                                    title_weight=title_weight)
                ranks.append(rank_of(hits, q))
            search_ms = 1000 * (time.perf_counter() - t1) / max(1, len(questions))
            n = len(questions)
            rows.append({
                "max_chars": max_chars, "title_weight": title_weight, "chunks": report.chunks,
                **{f"recall@{k}": sum(1 for r in ranks if r and r <= k) / n for k in KS},
                "recall@10": sum(1 for r in ranks if r) / n,
                "mrr": sum(1 / r for r in ranks if r) / n, "index_s": index_s,
                "search_ms": search_ms, "ranks": ranks,
            })
        index.close()
    return rows


def answered(reply: str, q: dict[str, Any]) -> bool:
    return any(re.search(p, reply) for p in q["answers"])


def answer_rates(corpus: Path, questions: list[dict[str, Any]], work: Path,
                 max_context_tokens: int) -> dict[str, Any]:
    from slmchat.engine.devices import configure_threads
    from slmchat.engine.generation.prompting import ChatMessage
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.default import ensure_default_model
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.retrieval.context import retrieve
    from slmchat.engine.retrieval.index import DocumentIndex
    from slmchat.engine.session import Engine, TrainingWatch

    threads = configure_threads()
    engine = Engine(training=TrainingWatch(count=lambda: 0))
    engine.load(ModelSpec(path=str(ensure_default_model()), dtype="fp32", device="cpu"))
    params = SamplingParams(temperature=0.0, max_new_tokens=48)
    index = DocumentIndex(work / "answers.db")
    index.index([corpus])
    roots = [str(corpus.resolve())]
    rows = []
    for q in questions:
        plain = [ChatMessage("user", q["q"])]
        aug = retrieve(index, roots, plain, lambda m: engine.preview_prompt(m, params),
                       params.max_new_tokens, max_context_tokens=max_context_tokens)
        replies = {}
        for label, msgs in (("without", plain), ("with", aug.messages)):
            chunks = list(engine.stream_chat(msgs, params))
            replies[label] = "".join(c.text for c in chunks)
        rows.append({
            "q": q["q"], "file": q["file"],
            "passage_in_prompt": rank_of(aug.sources, q) is not None,
            "context_tokens": aug.context_tokens,
            "without": answered(replies["without"], q), "with": answered(replies["with"], q),
            "reply_without": replies["without"], "reply_with": replies["with"],
        })
        print(f"  {'+' if rows[-1]['with'] else '-'}{'+' if rows[-1]['without'] else '-'} "
              f"{q['q'][:70]}", flush=True)
    index.close()
    n = len(rows)
    return {
        "threads": threads, "max_new_tokens": 48, "max_context_tokens": max_context_tokens,
        "answer_rate_without": sum(r["without"] for r in rows) / n,
        "answer_rate_with": sum(r["with"] for r in rows) / n,
        "passage_in_prompt": sum(r["passage_in_prompt"] for r in rows) / n,
        "answer_rate_with_given_passage": (
            sum(r["with"] for r in rows if r["passage_in_prompt"])
            / max(1, sum(r["passage_in_prompt"] for r in rows))),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-model", action="store_true", help="recall only (no answers)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="passage budget for the answer run (default: slmchat's)")
    ns = parser.parse_args()
    from slmchat.engine.offline import ensure_offline
    from slmchat.engine.retrieval.context import DEFAULT_MAX_CONTEXT_TOKENS

    ensure_offline()
    questions = json.loads(QUESTIONS.read_text())
    report: dict[str, Any] = {"benchmark": "retrieval", "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        missing = build_corpus(corpus)
        asked = [q for q in questions if q["file"] not in missing][:ns.limit]
        files = sorted(p for p in corpus.iterdir() if p.is_file())
        report["corpus"] = {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
                            "missing": missing}
        report["questions"] = {"total": len(questions), "asked": len(asked),
                               "skipped_missing_document": len(questions) - len(asked)}
        print(f"corpus: {len(files)} files, {report['corpus']['bytes'] / 1e6:.1f} MB; "
              f"{len(asked)} of {len(questions)} questions (missing documents: "
              f"{', '.join(missing) or 'none'})")
        rows = recall_table(corpus, asked, Path(tmp))
        report["recall"] = rows
        print(f"\n{'chunk chars':>11s} {'title w':>7s} {'chunks':>6s} {'R@1':>5s} {'R@3':>5s} "
              f"{'R@5':>5s} {'R@10':>5s} {'MRR':>5s} {'index s':>7s} {'ms/q':>5s}")
        for r in rows:
            print(f"{r['max_chars']:11d} {r['title_weight']:7.1f} {r['chunks']:6d} "
                  f"{r['recall@1']:5.2f} {r['recall@3']:5.2f} {r['recall@5']:5.2f} "
                  f"{r['recall@10']:5.2f} {r['mrr']:5.2f} {r['index_s']:7.2f} "
                  f"{r['search_ms']:5.1f}")
        if not ns.no_model:
            budget = ns.context_tokens or DEFAULT_MAX_CONTEXT_TOKENS
            print("\nanswers (+/-: with retrieval, without):")
            ans = answer_rates(corpus, asked, Path(tmp), budget)
            report["answers"] = ans
            print(f"\nanswer rate without retrieval {ans['answer_rate_without']:.2f}, with "
                  f"retrieval {ans['answer_rate_with']:.2f} (passage in the prompt for "
                  f"{ans['passage_in_prompt']:.2f} of the questions; answer rate when it was "
                  f"{ans['answer_rate_with_given_passage']:.2f})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
