"""One line at the bottom: model, dtype/quant, device, context bar, speed, memory."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from slmchat.engine.model.remote import is_remote_kind
from slmchat.engine.model.spec import ModelInfo
from slmchat.i18n import t
from slmchat.tui.widgets.fitted_line import Part, fit_parts, part

if TYPE_CHECKING:
    from slmchat.engine.generation.decode import GenerationChunk

BAR_WIDTH = 10
STATUS_REFRESH_S = 0.25  # how often a streaming reply repaints the status line


def process_rss() -> int | None:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:
        return None


def gpu_memory(device: str) -> int | None:
    """Allocated CUDA memory, only if torch is already imported and the model is on CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        return int(torch.cuda.memory_allocated(device))
    except Exception:
        return None


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def context_bar(used: int, limit: int, width: int = BAR_WIDTH) -> Text:
    """A bar drawn with background colours (no block glyphs: they render unevenly)."""
    frac = 0.0 if limit <= 0 else min(1.0, used / limit)
    filled = round(frac * width)
    if used and not filled:
        filled = 1  # show that something is in use
    colour = "red" if frac > 0.9 else "yellow" if frac > 0.7 else "cyan"
    return Text.assemble((" " * filled, f"on {colour}"), (" " * (width - filled), "on grey30"))


class StatusBar(Static):
    """Reads everything from attributes; call ``refresh_status`` after changing them (the
    chat screen tells it with the methods below, which do)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info: ModelInfo | None = None
        self.loading_name: str | None = None  # name of the model being loaded
        self.loading_step: tuple[str, float] | None = None  # a long step: text, fraction
        self.load_error: str | None = None
        self.context_used = 0
        self.ttft_s: float | None = None
        self.decode_tps: float | None = None
        self.speculative: tuple[int, int] | None = None  # last reply: (accepted, drafted)
        self.generating = False
        self.thinking = True  # a thinking model's switch (shown when the model has one)
        # Injectable so snapshot tests show a fixed value.
        self.memory_probe: Callable[[], int | None] = process_rss
        self._drawn_at = 0.0  # when a streaming reply last repainted the line

    def on_mount(self) -> None:
        self.set_interval(2.0, self.refresh_status)

    def refresh_status(self) -> None:
        if self.is_mounted:
            self.refresh()

    # --- what the chat screen tells it ---

    def model_loading(self, name: str) -> None:
        self.loading_name, self.loading_step = name, None
        self.refresh_status()

    def load_progress(self, text: str, fraction: float) -> None:
        """A long load step (a model's first ONNX conversion)."""
        self.loading_step = (text, fraction)
        self.refresh_status()

    def model_loaded(self, info: ModelInfo | None, thinking: bool) -> None:
        self.loading_name = self.loading_step = self.load_error = None
        if self.info is not info:  # the last reply's speed was another model's
            self.ttft_s = self.decode_tps = None
            self.speculative = None
        self.info = info
        self.thinking = thinking
        self.refresh_status()

    def model_failed(self, error: str, info: ModelInfo | None) -> None:
        """Not loaded: the error, and the model still loaded (if any)."""
        self.loading_name = self.loading_step = None
        self.load_error = error
        self.info = info
        self.refresh_status()

    def reply_started(self) -> None:
        self.generating = True
        self.refresh_status()

    def reply_progress(self, context_used: int, decode_tps: float) -> None:
        """The context bar and speed follow a streaming reply: repainted a few times a
        second, not per token, since every repaint takes the UI thread (and the GIL)
        from the decode loop (benchmarks/bench_app.py)."""
        self.context_used = context_used
        self.decode_tps = decode_tps or self.decode_tps
        now = time.monotonic()
        if now - self._drawn_at >= STATUS_REFRESH_S:
            self._drawn_at = now
            self.refresh_status()

    def reply_finished(self, last: GenerationChunk | None) -> None:
        self.generating = False
        if last is not None:
            self.ttft_s = last.ttft_s
            self.decode_tps = last.decode_tps
            self.context_used = last.prompt_tokens + last.new_tokens
            self.speculative = (last.accepted, last.drafted) if last.speculative else None
        self.refresh_status()

    def render(self) -> Text:
        return self.render_status(self.content_size.width or None)

    def render_status(self, width: int | None = None) -> Text:
        """The line, fitted to ``width``: what does not fit is left out whole, least
        important first (the model and the offline mark stay)."""
        return fit_parts(self.status_parts(), width)

    def status_parts(self) -> list[Part]:
        parts: list[Part] = []
        if self.loading_name:
            parts.append(part(t("statusbar.loading", name=self.loading_name), 0, "bold yellow"))
            if self.loading_step is not None:
                text, fraction = self.loading_step
                parts.append(part(f"{text} {fraction:.0%}  ", 1, "yellow"))
        elif self.info is None:
            parts.append(part(t("statusbar.no_model"), 0, "bold red"))
            if self.load_error:
                parts.append(part(t("statusbar.pick_one"), 1, "red"))
        if self.info is not None:
            info = self.info
            quant = "" if info.quant == "none" else f"/{info.quant}"
            parts.append(part(info.name, 0, "bold"))
            runtime = f"  {info.runtime_tag}" if info.runtime_tag else ""
            parts.append(part(f"  {info.dtype}{quant}  {info.device}{runtime}", 5))
            if info.thinking_switch:
                key = "statusbar.thinking_on" if self.thinking else "statusbar.thinking_off"
                parts.append(part(t(key), 4, "" if self.thinking else "dim"))
            parts.append(part(t("statusbar.ctx"), 3))
            parts.append((Text(" ") + context_bar(self.context_used, info.context_length), 7))
            parts.append(part(f" {self.context_used}/{info.context_length}", 3))
        if self.generating:
            parts.append(part(t("statusbar.generating"), 0, "italic"))
        if self.ttft_s is not None:
            parts.append(part(t("statusbar.ttft", s=self.ttft_s), 6))
        if self.decode_tps:
            parts.append(part("  " + t("stats.tps", tps=self.decode_tps), 2))
        if self.speculative is not None:  # speculative decoding: draft tokens the model kept
            accepted, drafted = self.speculative
            parts.append(part("  " + t("statusbar.accepted", accepted=accepted, drafted=drafted), 6))
        rss = self.memory_probe()
        if rss is not None:
            parts.append(part(t("statusbar.rss", size=_mib(rss)), 4))
        if self.info is not None:
            gpu = gpu_memory(self.info.device)
            if gpu is not None:
                parts.append(part(t("statusbar.gpu", size=_mib(gpu)), 4))
        # Nothing leaves the machine: the Hugging Face offline switches are set before
        # any model code is imported (engine/offline.py), and this says whether they are.
        if self.info is not None and is_remote_kind(self.info.kind):
            # the model runs on a server: say where the conversation goes
            parts.append(part(t("statusbar.remote", host=self.info.device), 0, "bold magenta"))
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            parts.append(part(t("statusbar.offline"), 0, "green"))
        else:
            parts.append(part(t("statusbar.not_offline"), 0, "bold red"))
        return parts
