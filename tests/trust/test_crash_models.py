"""kill -9 inside the default-model conversion, a fine-tune checkpoint write, and an
export/quantize: the next start sees a complete copy or none, never a half one.

Each child is killed at a named step of its write protocol (see crashkit.py): before and
after the weights are written, before and after the final rename. A tiny GGUF (written by
slmchat's own exporter) stands in for the 98 MB default-model GGUF so each kill costs a
few seconds instead of ~40.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from slmchat.engine.finetune import rundir as runs
from slmchat.engine.model import default as dm
from tests.trust.counts import record
from tests.trust.crashkit import run_and_kill

SAVE_HOOKS = [
    ("transformers.modeling_utils:PreTrainedModel.save_pretrained", "model_save"),
    ("transformers.tokenization_utils_base:PreTrainedTokenizerBase.save_pretrained",
     "tok_save"),
    ("os:replace", "replace"),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec
    from slmchat.engine.tools.gguf_writer import write_gguf

    lm = load(ModelSpec(path=str(tiny_llama_dir), device="cpu", dtype="fp32"))
    out = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(lm.model, lm.tokenizer, out, "f16", name="tiny")
    return out


@pytest.fixture(scope="module")
def reference_conversion(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    target = tmp_path_factory.mktemp("ref") / dm.MODEL_NAME
    dm.convert_gguf(tiny_gguf, target)
    return _sha(target / "model.safetensors")


CONVERT = """
import sys
from pathlib import Path
import slmchat.engine.model.default as dm
dm.gguf_path = lambda: Path(sys.argv[1])
dm.ensure_default_model()
print("finished", flush=True)
"""

CONVERSION_POINTS = [
    r"^enter model_save", r"^enter replace \.SmolLM2\S+ SmolLM2", r"^leave replace",
]


@pytest.mark.parametrize("at", CONVERSION_POINTS)
def test_kill_during_default_model_conversion(
    at: str, tiny_gguf: Path, reference_conversion: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    result = run_and_kill(SAVE_HOOKS, at, code=CONVERT, args=(str(tiny_gguf),),
                          env={"SLMCHAT_CACHE_DIR": str(cache)})
    assert result.killed, result.lines
    target = cache / "models" / dm.MODEL_NAME
    # What a next start sees right after the kill: nothing, or a complete copy.
    if target.exists():
        assert dm.is_converted(target)
        assert _sha(target / "model.safetensors") == reference_conversion
    else:
        assert not dm.is_converted(target)
    # The next start converts again (or reuses the copy) and gets the same weights.
    monkeypatch.setenv("SLMCHAT_CACHE_DIR", str(cache))
    monkeypatch.setattr(dm, "gguf_path", lambda: tiny_gguf)
    assert dm.ensure_default_model() == target
    lost = int(_sha(target / "model.safetensors") != reference_conversion)
    # No abandoned temp folder is left behind (each would hold a full model copy).
    leftovers = [p.name for p in (cache / "models").iterdir() if p.name.startswith(".")
                 and p.is_dir()]
    record(kills=1, states=2, lost_rows=lost)
    assert lost == 0
    assert leftovers == []


# --- fine-tune checkpoints ---------------------------------------------------------

CKPT_HOOKS = [("safetensors.torch:save_file", "save_file"), ("os:replace", "replace")]
CKPT_POINTS = [  # the second checkpoint (step 4), so a complete step 2 exists before it
    (r"^enter save_file weights\.safetensors", 2),
    (r"^enter replace \.step-00000004\.tmp-[\w-]+ step-00000004", 1),
]


@pytest.fixture(scope="module")
def train_reference(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from slmchat.engine.finetune.job import run_job

    root = tmp_path_factory.mktemp("ref-run")
    run_dir = _prepare(tiny_llama_dir, root)
    assert run_job(run_dir)["state"] == "done"
    return run_dir


def _prepare(model: Path, root: Path) -> Path:
    from slmchat.engine.finetune.args import TrainArgs
    from slmchat.engine.finetune.plan import prepare_run
    from tests.tinymodels import CORPUS

    notes = root / "notes.txt"
    notes.write_text(CORPUS)
    args = TrainArgs(data=str(notes), model=str(model), max_steps=6, block_size=32,  # type: ignore[arg-type]
                     batch_size=2, save_every=2, max_eval_blocks=4, device="cpu", bf16="off")
    return prepare_run(args, run_dir=root / "run")


@pytest.mark.parametrize(("at", "nth"), CKPT_POINTS)
def test_kill_during_checkpoint_write_resumes_from_last_complete(
    at: str, nth: int, tiny_llama_dir: Path, train_reference: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from safetensors.torch import load_file

    from slmchat.engine.finetune.job import run_job

    monkeypatch.setenv("SLMCHAT_THREADS", "1")
    torch_threads = torch.get_num_threads()
    run_dir = _prepare(tiny_llama_dir, tmp_path)
    result = run_and_kill(CKPT_HOOKS, at, module="slmchat.engine.finetune", args=(str(run_dir),),
                          nth=nth)
    assert result.killed, result.lines
    complete = runs.checkpoints(run_dir)
    steps = [s for s, _ in complete]
    assert steps and steps[-1] in (2, 4)
    for _, folder in complete:  # whatever counts as a checkpoint is whole
        load_file(str(folder / "weights.safetensors"))
        load_file(str(folder / "optimizer.safetensors"))
        assert runs.read_json(folder / "state.json")["step"] in (2, 4)
    latest = steps[-1]
    try:
        status = run_job(run_dir)
    finally:
        torch.set_num_threads(torch_threads)
    assert status["state"] == "done" and status["step"] == 6
    # The resumed job continued after the newest complete checkpoint, not from scratch.
    steps_logged = [r["step"] for r in runs.read_progress(run_dir) if "loss" in r]
    assert steps_logged.count(latest + 1) >= 1 and steps_logged[-1] == 6
    resumed = load_file(str(run_dir / "model" / "adapter_model.safetensors"))
    straight = load_file(str(train_reference / "model" / "adapter_model.safetensors"))
    drift = max(float((resumed[k] - straight[k]).abs().max()) for k in straight)
    record(kills=1, states=len(complete) + 1, lost_rows=int(drift >= 1e-5))
    assert resumed.keys() == straight.keys()
    assert drift < 1e-5, f"resumed from step {latest}, weights differ by {drift}"


# --- export / quantize ---------------------------------------------------------------

EXPORT = """
import sys
from pathlib import Path
from slmchat.engine.model.spec import ModelSpec
from slmchat.engine.tools.export import export_model
from slmchat.engine.tools.quantize import quantize_and_save
spec = ModelSpec(path=sys.argv[1], device="cpu", dtype="fp32")
out = Path(sys.argv[2])
if sys.argv[3] == "export":
    export_model(spec, out=out / "exported", gguf=out / "exported.gguf", verify=False)
else:
    quantize_and_save(spec, out / "quantized", method="cpu-int8", bits=8)
print("finished", flush=True)
"""
EXPORT_HOOKS = [*SAVE_HOOKS, ("gguf:GGUFWriter.write_tensors_to_file", "gguf_tensors"),
                ("slmchat.engine.model.int8:save_cpu_int8", "int8_save")]
EXPORT_POINTS = [
    ("export", r"^enter model_save"),
    ("export", r"^enter replace \.exported\.tmp-\S+ exported$"),
    ("export", r"^enter gguf_tensors"),
    ("quantize", r"^leave int8_save"),
]


@pytest.mark.parametrize(("what", "at"), EXPORT_POINTS)
def test_kill_during_export_or_quantize_leaves_no_half_output(
    what: str, at: str, tiny_llama_dir: Path, tmp_path: Path,
) -> None:
    from slmchat.engine.model.discovery import scan_folder
    from slmchat.engine.model.loader import load
    from slmchat.engine.model.spec import ModelSpec

    out = tmp_path / "out"
    out.mkdir()
    delay = random.Random(at).uniform(0, 0.05)
    result = run_and_kill(EXPORT_HOOKS, at, code=EXPORT,
                          args=(str(tiny_llama_dir), str(out), what), extra_delay=delay)
    assert result.killed, result.lines
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    states = 0
    for name in visible:  # anything under its final name is complete and loads
        states += 1
        path = out / name
        if path.is_dir():
            assert (path / "README.md").is_file() or (path / "slmchat-quantized.json").exists() \
                or any(path.glob("*.md")), f"{name} is missing its card"
        load(ModelSpec(path=str(path), device="cpu", dtype="fp32"))
    found = [str(m.path) for m in scan_folder(out, "test")]
    assert all(Path(f).name in visible for f in found), found
    record(kills=1, states=states + 1)
