"""Messages posted from worker threads to the UI (the only way threads talk back), and
the chat screen's requests to the app ("attributes down, messages up": the screen never
calls the app's methods; it posts one of these and the app handles it in app.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from textual.message import Message

from slmchat.engine.generation.decode import GenerationChunk
from slmchat.engine.model.discovery import ModelEntry
from slmchat.engine.model.spec import ModelInfo, ModelSpec


class ChatReady(Message):
    """The chat screen has mounted and focused its prompt (posted to the app)."""


# --- the chat screen's requests to the app (tui/app.py handles them) ---


class LoadModelRequested(Message):
    """Load ``spec`` (a panel's choice, "Use model", "Switch back")."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec


class CompareRunRequested(Message):
    """Compare a finished fine-tune's model with its base in the compare view (the
    fine-tune panel's Compare, the end-of-run offer); ``engine``: the one the panel
    trains beside, None for the app's."""

    def __init__(self, summary: Any, engine: Any = None) -> None:
        super().__init__()
        self.summary = summary
        self.engine = engine


class PanelRequested(Message):
    """Open the ``kind`` panel ("models", "finetune"): docked beside the chat when the
    terminal is wide enough, else as a screen; ``data_file``: the fine-tune panel's
    training file (the marked replies just exported)."""

    def __init__(self, kind: str, data_file: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.data_file = data_file


class GenerationDefaultsSaved(Message):
    """The settings panel's "Save as default": keep ``values`` in settings.toml."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.values = values


class TintDraftsChanged(Message):
    """Tinting of accepted draft tokens was turned on or off: keep it in settings.toml."""

    def __init__(self, on: bool) -> None:
        super().__init__()
        self.on = on


class ThinkingChosen(Message):
    """Thinking on/off was chosen for the model at ``path`` (remembered per model)."""

    def __init__(self, path: str, on: bool) -> None:
        super().__init__()
        self.path = path
        self.on = on


# --- model loading (the app's worker) ---


class ModelLoaded(Message):
    """The engine finished loading ``spec``; ``info`` describes it."""

    def __init__(self, spec: ModelSpec, info: ModelInfo) -> None:
        super().__init__()
        self.spec = spec
        self.info = info


class ModelLoadProgress(Message):
    """A long load step (a first ONNX conversion): what it does and the fraction done."""

    def __init__(self, text: str, fraction: float) -> None:
        super().__init__()
        self.text = text
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelLoadProgress)


class ModelLoadFailed(Message):
    """Loading ``spec`` failed; the previous model (if any) is still loaded."""

    def __init__(self, spec: ModelSpec, error: str) -> None:
        super().__init__()
        self.spec = spec
        self.error = error


class ReplyDelta(Message):
    """New reply text. Deltas are appended in order, so they are never merged away.
    ``context_used`` (prompt + reply tokens so far) and ``decode_tps`` keep the status
    bar's context bar and speed current while the reply streams."""

    bubble = False  # for the chat screen only

    def __init__(self, msg_id: int, text: str, context_used: int = 0,
                 decode_tps: float = 0.0, reasoning: str = "", reasoning_tokens: int = 0,
                 accepted_draft: bool = False) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.text = text
        self.accepted_draft = accepted_draft  # ``text`` is accepted draft tokens' (tinting)
        self.context_used = context_used
        self.decode_tps = decode_tps
        self.reasoning = reasoning  # new reasoning ("thinking") text, apart from the answer
        self.reasoning_tokens = reasoning_tokens


class ReplyFinished(Message):
    """The reply ended; ``status`` is done | length | stopped | error."""

    bubble = False

    def __init__(
        self, msg_id: int, status: str, last: GenerationChunk | None, error: str | None,
        provenance: dict[str, Any],
    ) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.status = status
        self.last = last
        self.error = error
        self.provenance = provenance


# --- model panel (slmchat/tui/screens/models.py, model_tasks.py) ---


class ModelsFound(Message):
    """A discovery scan finished; ``select_path`` is chosen when given."""

    def __init__(self, entries: list[ModelEntry], select_path: str | None = None) -> None:
        super().__init__()
        self.entries = entries
        self.select_path = select_path


class TaskProgress(Message):
    """Progress of a quantize/export worker; bursts collapse into the latest one."""

    def __init__(self, task: str, text: str, fraction: float) -> None:
        super().__init__()
        self.task = task
        self.text = text
        self.fraction = fraction

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TaskProgress) and message.task == self.task


class TaskDone(Message):
    """A scan, quantize or export job ended; ``new_path`` is what it wrote."""

    def __init__(self, task: str, text: str, ok: bool, new_path: str | None = None) -> None:
        super().__init__()
        self.task = task
        self.text = text
        self.ok = ok
        self.new_path = new_path


# --- fine-tune panel (slmchat/tui/screens/finetune.py, file_pick.py) ---


class PreviewText(Message):
    """Text for the fine-tune panel's preview box (a preview, an estimate, an error)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PreviewText)


class RunSpawned(Message):
    """A fine-tune process was started for ``run_dir``; the panel adopts ``proc``."""

    def __init__(self, run_dir: Path, proc: subprocess.Popen[bytes]) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.proc = proc


class IndexProgressed(Message):
    """Indexing attached files: ``files_done`` of ``files_total`` (a burst collapses)."""

    def __init__(self, files_done: int, files_total: int, bytes_done: int,
                 bytes_total: int) -> None:
        super().__init__()
        self.files_done = files_done
        self.files_total = files_total
        self.bytes_done = bytes_done
        self.bytes_total = bytes_total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IndexProgressed)


class IndexFinished(Message):
    """Indexing ended; ``report`` is an IndexReport, ``error`` a one-line reason."""

    def __init__(self, report: Any, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error


class CompareModelsFound(Message):
    """The compare dialog's list of local models (its discovery worker)."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        super().__init__()
        self.entries = entries


class CompareRightLoaded(Message):
    """The compare view's second engine loaded (``engine``) or did not (``error``).
    ``left`` is the left side's own engine when that side is not the chat's model
    (base vs tuned from the fine-tune panel)."""

    def __init__(self, engine: Any = None, error: str | None = None,
                 left: Any = None) -> None:
        super().__init__()
        self.engine = engine
        self.error = error
        self.left = left


class CompareDelta(Message):
    """New text for one side of the compare view."""

    def __init__(self, side: str, text: str) -> None:
        super().__init__()
        self.side = side
        self.text = text


class CompareSideDone(Message):
    """One side of the compare view finished (status, last chunk, provenance)."""

    def __init__(self, side: str, status: str, chunk: GenerationChunk | None,
                 prov: dict[str, Any]) -> None:
        super().__init__()
        self.side = side
        self.status = status
        self.chunk = chunk
        self.prov = prov


class CompareAllDone(Message):
    """Both sides of the compare view finished."""


class PromptBuilt(Message):
    """The prompt inspector's prompt (or the one-line reason it could not be built)."""

    def __init__(self, prompt: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.prompt = prompt
        self.error = error


class ToolCallRequested(Message):
    """A reply called a tool (``call``: the stored tool_call dict); ``chain``: how many
    calls came before it in this turn. The chat asks the user before anything runs."""

    bubble = False

    def __init__(self, msg_id: int, call: dict[str, Any], chain: int) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.call = call
        self.chain = chain


class ToolCallDone(Message):
    """An allowed tool call ran; ``call`` now holds its result (stored already)."""

    bubble = False

    def __init__(self, msg_id: int, call: dict[str, Any], chain: int) -> None:
        super().__init__()
        self.msg_id = msg_id
        self.call = call
        self.chain = chain


class ToolsProblem(Message):
    """Listing the MCP servers' tools found problems (one line each)."""

    bubble = False

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__()
        self.problems = problems
