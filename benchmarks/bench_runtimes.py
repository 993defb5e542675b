"""The runtimes on the model sizes people run: slmchat against llama-cpp-python's own
token loop on the same GGUF file, in the same run.

Checkpoints are built from the real SmolLM2-360M and SmolLM2-1.7B configs, and from
Qwen2.5-1.5B-Instruct's and Qwen2.5-3B-Instruct's (Qwen2: q/k/v biases, a 151,936-row
embedding tied to the head), with random weights (normal, std 0.02, bf16) and the default
model's tokenizer: speed and memory do not depend on the weight values, so this is how to
measure sizes no package ships. A Qwen shape's embedding rows past that tokenizer's 49,152
ids are zero (the vocabulary is padded in the GGUF, as a real Qwen2.5's is past its
151,665 tokens), so greedy decoding picks tokens that have text. They
are made once into --cache (outside the repo, several GB): the bf16 folder, its Q4_K_M
GGUF (slmchat's streaming GGUF copy, whose peak RSS is item "conversion" below) and an
Ollama store holding that GGUF as a blob under the name ``bench-SHAPE:q4_k_m``.

For each shape, in separate processes (cold caches are not dropped: "cold" is a fresh
process on files the OS may hold in its page cache, as a second start is for a user):
- ``convert``: bf16 folder -> Q4_K_M GGUF copy, wall time and peak RSS of the converter;
- ``generate``: `slmchat generate --model bench-SHAPE:q4_k_m` by its store name, from
  process start to the first byte of the reply, plus its --stats line;
- ``ours`` / ``llama.cpp``: decode tok/s over 128 greedy tokens, first token of a ~1k
  prompt, a follow-up turn's first token, peak RSS; slmchat's loop (the llamacpp runtime,
  numpy sampling) and llama-cpp-python's generate() alternate for --rounds rounds and
  the best round of each is kept (other work on the machine only ever slows a round).

Usage: python benchmarks/bench_runtimes.py [--shapes 1.7b,360m,qwen2.5-1.5b,qwen2.5-3b] [--rounds 3]
       [--cache ~/.cache/slmchat-bench] [--out benchmarks/results/runtimes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHAPES: dict[str, dict[str, Any]] = {
    # config.json values of HuggingFaceTB/SmolLM2-{360M,1.7B}-Instruct
    "360m": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
             "num_attention_heads": 15, "num_key_value_heads": 5, "rope_theta": 100000.0,
             "max_position_embeddings": 8192},
    "1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
             "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 130000.0,
             "max_position_embeddings": 8192},
    # config.json values of Qwen/Qwen2.5-{1.5B,3B}-Instruct (QWEN below: what both share)
    "qwen2.5-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2},
    "qwen2.5-3b": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                   "num_attention_heads": 16, "num_key_value_heads": 2},
}
QWEN = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
        "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 32768,
        "max_window_layers": 21}
COMMON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
          "hidden_act": "silu", "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
          "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "torch_dtype": "bfloat16",
          "attention_bias": False, "mlp_bias": False}
TEXT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "chat_template.jinja", "generation_config.json")
DECODE = 128
TOKENIZER_VOCAB = COMMON["vocab_size"]  # the default model's tokenizer, every shape's


def config_of(shape: str) -> dict[str, Any]:
    cfg = {**COMMON, **SHAPES[shape]}
    if shape.startswith("qwen"):
        cfg.update(QWEN)
        cfg.pop("attention_bias")  # Qwen2 always has q/k/v biases (and no such key)
        cfg.pop("mlp_bias")
    return cfg


def _write_bf16(fh: Any, rng: Any, shape: tuple[int, ...], ones: bool = False,
                rows: int | None = None) -> None:
    """Random (or all-one) bf16 values of ``shape``, in blocks of rows so that a 151,936 x
    2,048 embedding never exists in fp32 at once; rows from ``rows`` on are zero."""
    import numpy as np

    step = max(1, (1 << 24) // int(np.prod(shape[1:], dtype=np.int64)))
    for start in range(0, shape[0], step):
        block = (min(step, shape[0] - start), *shape[1:])
        if ones:
            f = np.ones(block, dtype=np.float32)
        else:
            f = rng.standard_normal(block, dtype=np.float32) * np.float32(0.02)
            if rows is not None and start + block[0] > rows:
                f[max(0, rows - start):] = 0
        fh.write((f.view(np.uint32) >> 16).astype(np.uint16).tobytes())


def make_checkpoint(shape: str, out: Path) -> Path:
    """A random-weight bf16 checkpoint of ``shape`` (a plain safetensors writer: no fp32
    model in memory)."""
    import numpy as np

    from slmchat.engine.model.default import ensure_default_model

    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_of(shape)
    h, inter, n_layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    head = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head
    shapes: list[tuple[str, tuple[int, ...], bool]] = [
        ("model.embed_tokens.weight", (cfg["vocab_size"], h), False)]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        if cfg["model_type"] == "qwen2":
            shapes += [(p + "self_attn.q_proj.bias", (h,), False),
                       (p + "self_attn.k_proj.bias", (kv,), False),
                       (p + "self_attn.v_proj.bias", (kv,), False)]
        shapes += [(p + "input_layernorm.weight", (h,), True),
                   (p + "post_attention_layernorm.weight", (h,), True),
                   (p + "self_attn.q_proj.weight", (h, h), False),
                   (p + "self_attn.k_proj.weight", (kv, h), False),
                   (p + "self_attn.v_proj.weight", (kv, h), False),
                   (p + "self_attn.o_proj.weight", (h, h), False),
                   (p + "mlp.gate_proj.weight", (inter, h), False),
                   (p + "mlp.up_proj.weight", (inter, h), False),
                   (p + "mlp.down_proj.weight", (h, inter), False)]
    shapes.append(("model.norm.weight", (h,), True))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shp, _ in shapes:
        n = 2 * int(np.prod(shp))
        header[name] = {"dtype": "BF16", "shape": list(shp), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    tmp = out / "model.safetensors.part"
    with tmp.open("wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for name, shp, ones in shapes:
            _write_bf16(fh, rng, shp, ones,
                        TOKENIZER_VOCAB if name == "model.embed_tokens.weight" else None)
    tmp.rename(out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    src = ensure_default_model()
    for name in TEXT_FILES:
        if (src / name).is_file():
            (out / name).write_bytes((src / name).read_bytes())
    return out


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh Python; it prints one JSON line last (peak RSS added)."""
    wrapper = ("import json, resource, sys\n" + code +
               "\nres['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"
               "\nprint(json.dumps(res))")
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


CONVERT = """
import time
from pathlib import Path
from slmchat.engine.model.gguf_copy import convert
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
t = time.perf_counter(); path = convert(Path(sys.argv[1]), out)
res = {'convert_s': time.perf_counter() - t, 'gguf_mb': path.stat().st_size / 2**20}
"""

# The same measurements on both loops: decode over DECODE greedy tokens, a ~1k-token prompt's
# first token, and a follow-up turn on the same context.
LOOP = """
import time
from pathlib import Path
which, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
DECODE = DECODE_N
t = time.perf_counter()
if which == 'ours':
    from slmchat.engine import runtimes
    from slmchat.engine.generation.decode import PromptCache, stream_backend
    from slmchat.engine.generation.sampling import SamplingParams
    from slmchat.engine.model.spec import ModelSpec
    lm = runtimes.load(ModelSpec(path=path, runtime='llamacpp'))
    lm.model.set_threads(threads)
    tok, backend, cache = lm.tokenizer, runtimes.backend_for(lm), PromptCache()
    load_s = time.perf_counter() - t
    def run(ids, n):
        p = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=n, ignore_eos=True)
        last = list(stream_backend(backend, tok, ids, p, prompt_cache=cache))[-1]
        return last.ttft_s, last.decode_tps, list(cache.tokens)
    encode = lambda s: tok(s, add_special_tokens=False)['input_ids']
else:
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=4096, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t
    def run(ids, n):
        t0 = time.perf_counter(); got = []
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            got.append(token)
            if len(got) == 1: t1 = time.perf_counter()
            if len(got) == n: break
        t2 = time.perf_counter()
        return t1 - t0, (n - 1) / (t2 - t1) if n > 1 else 0.0, list(ids) + got
    encode = lambda s: llm.tokenize(s.encode(), add_bos=False, special=True)
words = ('The history of small language models on personal computers is a story of '
         'memory bandwidth, quantization and careful engineering. ') * 60
head = encode('<|im_start|>user\\n')
long_ids = (head + encode(words))[:1000] + encode('<|im_end|>\\n<|im_start|>assistant\\n')
_, decode_tps, _ = run(encode('<|im_start|>user\\nHello<|im_end|>\\n<|im_start|>assistant\\n'), DECODE)
ttft_1k, _, kept = run(long_ids, 8)
ttft_follow, _, _ = run(kept + encode('<|im_end|>\\n<|im_start|>user\\nMore?<|im_end|>\\n'
                                      '<|im_start|>assistant\\n'), 8)
res = {'load_s': load_s, 'decode_tok_s': decode_tps, 'ttft_1k_s': ttft_1k,
       'ttft_followup_s': ttft_follow, 'prompt_tokens': len(long_ids)}
""".replace("DECODE_N", str(DECODE))


def cold_generate(name: str, home: Path) -> dict[str, Any]:
    """`slmchat generate --model NAME` from process start to the reply's first byte."""
    cmd = [sys.executable, "-m", "slmchat", "generate", "--model", name, "Tell me a story.",
           "-t", "0", "--max-new-tokens", "32", "--stats"]
    env = {**os.environ, "SLMCHAT_TOOLS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - start
    _, err = proc.communicate(timeout=600)
    stats = next((line for line in err.decode().splitlines() if line.startswith("stats ")), "")
    fields = dict(kv.split("=", 1) for kv in stats.split()[1:] if "=" in kv)
    return {"first_byte_s": first, "exit": proc.returncode, "runtime": fields.get("runtime"),
            "decode_tok_s": float(fields.get("decode_tok_s", 0)),
            "peak_rss_mb": float(fields.get("peak_rss_mb", 0))}


def ollama_store(home: Path, name: str, gguf: Path) -> None:
    """Put ``gguf`` into an Ollama store under ``home`` as ``name`` (hard link, no copy)."""
    import hashlib

    root = home / ".ollama" / "models"
    model, tag = name.split(":")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / model / tag
    if manifest.is_file():
        return
    digest = hashlib.sha256()
    with gguf.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    blob = root / "blobs" / f"sha256-{digest.hexdigest()}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        os.link(gguf, blob)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model",
         "digest": f"sha256:{digest.hexdigest()}", "size": gguf.stat().st_size}]}))


def bench_shape(shape: str, cache: Path, rounds: int, threads: int) -> dict[str, Any]:
    folder = make_checkpoint(shape, cache / shape / "bf16")
    bf16_mb = (folder / "model.safetensors").stat().st_size / 2**20
    gguf_dir = cache / shape / "gguf"
    gguf = gguf_dir / "model.Q4_K_M.gguf"
    out: dict[str, Any] = {"shape": shape, "bf16_mb": bf16_mb}
    if not gguf.is_file():
        out["convert"] = _child(CONVERT, str(folder), str(gguf_dir))
        out["convert"]["rss_over_bf16"] = out["convert"]["peak_rss_mb"] / bf16_mb
    name = f"bench-{shape}:q4_k_m"
    home = cache / "home"
    ollama_store(home, name, gguf)
    out["generate"] = cold_generate(name, home)
    best: dict[str, dict[str, Any]] = {}
    # slmchat sets OMP_WAIT_POLICY=PASSIVE when it is imported (engine/offline.py); both
    # loops get the same policy, or llama.cpp's OpenMP threads alone spin-wait, which on
    # a busy CPU cut llama-cpp-python's 2-thread decode to 0.4-1 tok/s (16 with PASSIVE).
    wait = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for _ in range(rounds):
        for which in ("ours", "llama.cpp"):
            r = _child(LOOP, which, str(gguf), str(threads), env=wait)
            if which not in best or r["decode_tok_s"] > best[which]["decode_tok_s"]:
                best[which] = r
    out.update(best)
    out["decode_ratio"] = best["ours"]["decode_tok_s"] / best["llama.cpp"]["decode_tok_s"]
    out["rss_ratio"] = best["ours"]["peak_rss_mb"] / best["llama.cpp"]["peak_rss_mb"]
    return out


def _table(results: list[dict[str, Any]]) -> str:
    rows = ["| shape | path | load s | decode tok/s | TTFT 1k s | follow-up s | peak RSS MB |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        for which in ("ours", "llama.cpp"):
            m = r[which]
            label = "slmchat llamacpp runtime" if which == "ours" else "llama-cpp-python generate()"
            rows.append(f"| {r['shape']} Q4_K_M | {label} | {m['load_s']:.2f} | "
                        f"{m['decode_tok_s']:.1f} | {m['ttft_1k_s']:.2f} | "
                        f"{m['ttft_followup_s']:.3f} | {m['peak_rss_mb']:.0f} |")
        g = r["generate"]
        rows.append(f"| {r['shape']} | `generate --model bench-{r['shape']}:q4_k_m` (cold) | "
                    f"first byte {g['first_byte_s']:.2f} s | {g['decode_tok_s']:.1f} | | | "
                    f"{g['peak_rss_mb']:.0f} |")
        if "convert" in r:
            c = r["convert"]
            rows.append(f"| {r['shape']} | bf16 folder -> Q4_K_M copy | {c['convert_s']:.0f} s | | | | "
                        f"{c['peak_rss_mb']:.0f} ({c['rss_over_bf16']:.2f}x bf16) |")
        rows.append(f"| {r['shape']} | ratio ours / llama.cpp | | {r['decode_ratio']:.2f}x | | | "
                    f"{r['rss_ratio']:.2f}x |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="1.7b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "slmchat-bench"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtimes.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(args.cache).expanduser()
    from slmchat.engine.devices import cpu_info

    results = [bench_shape(s, cache, args.rounds, args.threads) for s in args.shapes.split(",")]
    report = {"machine": {**cpu_info(), "platform": platform.platform()},
              "threads": args.threads, "rounds": args.rounds, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(_table(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
