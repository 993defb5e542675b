"""The app remembers the model it last loaded, for itself only.

Loading a model in the app (the model panel, "Use model" after a fine-tune) never
changes ``[model]`` in settings.toml, which the command line uses too: otherwise
``slmchat generate`` would silently answer from whatever the app loaded last. The app
keeps its own note in ``DATA_DIR/app-state.json`` and opens with that model next time,
unless ``--model`` is given or ``[model]`` was changed since the note was written (an
edit of the settings file is the newer, deliberate choice).
"""

from __future__ import annotations

import json
from typing import Any

from slmchat.config import Settings
from slmchat.engine.model.spec import ModelSpec, same_model

STATE_FILE = "app-state.json"


def _state_path() -> Any:
    from slmchat.paths import data_dir

    return data_dir() / STATE_FILE


def _configured(settings: Settings) -> dict[str, Any]:
    return ModelSpec().with_identity(settings.model.model_dump()).identity()


def remembered(settings: Settings, spec: ModelSpec) -> ModelSpec | None:
    """``spec`` with the model the app loaded last, if ``[model]`` is still what it was
    then; None when there is no such note. A note written before a field of
    ``ModelSpec.identity()`` existed reads with that field's default."""
    try:
        state = json.loads(_state_path().read_text(encoding="utf-8"))
        model, over = state["model"], state["over"]
        if not isinstance(model, dict) or not isinstance(over, dict) \
                or not same_model(over, _configured(settings)):
            return None
        return spec.with_identity(model)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(spec: ModelSpec, settings: Settings) -> None:
    """Note ``spec`` as the app's model; forget the note when it is just ``[model]``."""
    from slmchat.engine.fsutil import write_json_atomic

    model = spec.identity()
    path = _state_path()
    if same_model(model, _configured(settings)):
        path.unlink(missing_ok=True)
        return
    write_json_atomic(path, {"model": model, "over": _configured(settings)})
