"""QLoRA on the CPU, checked against a dequantized reference.

bitsandbytes printed "gemv_4bit: an autograd kernel was not registered ... may lead to
silently incorrect behavior" during a CPU QLoRA run. The cause: on a CPU with
AVX512-BF16, a 4-bit layer that runs in eval mode without gradients (the run's
held-out evaluation before training) repacks its weights, in place, into an inference
layout, and from then on every forward -- training too -- goes through ``gemv_4bit``,
which has no backward: the gradient does not flow back through the frozen 4-bit layers
to the LoRA weights before them. ``build_model`` keeps the 4-bit layers out of that
inference path while training.

The test follows a run's order (an evaluation, then a training step) and compares what
QLoRA trains with what it should train: the same 4-bit weights dequantized to fp32 in a
plain LoRA model, the same LoRA weights, the same batch; the loss and every LoRA
gradient must agree. On a CPU without AVX512-BF16 (this one) bitsandbytes never takes
that path, so the test also runs with bitsandbytes told that the CPU has it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slmchat.engine.finetune.args import TrainArgs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(tiny_llama_dir: Path) -> tuple[Any, Any]:
    """(QLoRA model, fp32 LoRA model on the dequantized 4-bit weights), same LoRA init."""
    import torch
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    from slmchat.engine.finetune.loop import build_model

    args = TrainArgs(data="x", model=str(tiny_llama_dir), method="qlora", lora_dropout=0.0,
                     device="cpu", bf16="off")
    qlora, _, _ = build_model(args, "cpu", False)
    ref, _, _ = build_model(replace(args, method="lora"), "cpu", False)
    quantized = {n: m for n, m in qlora.named_modules() if isinstance(m, Linear4bit)}
    assert quantized, "QLoRA loaded no 4-bit layers"
    replaced = 0
    for name, module in ref.named_modules():
        if name in quantized:
            w = quantized[name].weight
            module.weight.data.copy_(dequantize_4bit(w.data, w.quant_state).float())
            replaced += 1
    assert replaced == len(quantized)
    # LoRA B starts at zero, which would leave A without a gradient: give both factors
    # the same small random values in both models.
    gen = torch.Generator().manual_seed(0)
    q_params = dict(qlora.named_parameters())
    for name, p in ref.named_parameters():
        if "lora_" in name:
            value = torch.randn(p.shape, generator=gen) * 0.05
            p.data.copy_(value)
            q_params[name].data.copy_(value)
    return qlora, ref


def _grads(model: Any, x: Any) -> tuple[float, dict[str, Any]]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in model.named_parameters()
                         if p.requires_grad}


@pytest.mark.parametrize("avx512bf16", [False, True], ids=["this-cpu", "avx512bf16-cpu"])
def test_qlora_gradients_on_cpu_match_a_dequantized_reference(
        tiny_llama_dir: Path, avx512bf16: bool, monkeypatch: pytest.MonkeyPatch,
        recwarn: pytest.WarningsRecorder) -> None:
    import torch

    if avx512bf16:  # what bitsandbytes decides on such a CPU (Linear4bit.__init__)
        import bitsandbytes.nn.modules as bnb_modules

        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    qlora, ref = _pair(tiny_llama_dir)
    torch.manual_seed(1)
    vocab = ref.config.vocab_size
    batches = [torch.randint(0, vocab, (2, 32)),   # a training batch
               torch.randint(0, vocab, (1, 32))]   # one row (the 4-bit kernels' other path)
    from slmchat.engine.finetune.loop import evaluate

    # The run scores its held-out blocks before training (eval mode, no gradients).
    evaluate(qlora, [list(map(int, batches[0][0]))], TrainArgs(data="x"), "cpu", False)
    worst = 0.0
    for x in batches:
        q_loss, q_grads = _grads(qlora, x)
        r_loss, r_grads = _grads(ref, x)
        assert q_loss == pytest.approx(r_loss, rel=1e-5)
        assert set(q_grads) == set(r_grads) and q_grads
        for name, g in r_grads.items():
            assert float(g.norm()) > 0, f"{name}: no gradient in the reference"
            rel = float((q_grads[name] - g).norm() / g.norm())
            worst = max(worst, rel)
            assert rel < 1e-4, f"{name}: QLoRA gradient differs by {rel:.2e} (relative)"
    assert not [w for w in recwarn.list if "autograd kernel was not registered" in str(w.message)]
    print(f"QLoRA on CPU vs dequantized fp32 reference: worst relative gradient "
          f"difference {worst:.1e}")
