"""Make sure Hugging Face libraries never touch the network.

Called before the first import of transformers/peft/datasets (the imports are lazy for
that reason). Setting the variables after transformers is imported is too late for
huggingface_hub's constants, so every engine entry point calls this first.
"""

from __future__ import annotations

import os

_OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # Our own UI shows progress; library bars and info logs would corrupt stdout/TUI.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def ensure_offline() -> None:
    for key, value in _OFFLINE_VARS.items():
        os.environ[key] = value
    # OpenMP threads that spin while waiting collapse throughput when the cores are
    # shared (a fine-tune beside the chat, a browser): measured on 2 busy cores, an int8
    # decode step took 1,984 ms with the default (active) policy and 20 ms with PASSIVE.
    # Only effective before torch is first imported; a user's own setting wins.
    # Measured idle (2 cores, default model): PASSIVE costs ~14% prefill and ~3% decode;
    # with two CPU hogs beside it, it is 2-4x faster than spinning. Robustness wins.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["SLMCHAT_OMP_DEFAULTED"] = "1"
    import sys

    # transformers reads its verbosity once; if it was imported already, set it too.
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


# The switches that keep Hugging Face libraries off the network (the rest above only
# quiet them), as `slmchat doctor` reports them.
NETWORK_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                    "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "HF_HUB_DISABLE_IMPLICIT_TOKEN")


def offline_status() -> dict[str, object]:
    """Each network switch's value now, whether all hold, and huggingface_hub's own view
    (its constants are read at import: set too late, the variables would not count)."""
    values = {key: os.environ.get(key) for key in NETWORK_SWITCHES}
    status: dict[str, object] = {
        "switches": values,
        "in_force": all(values[key] == _OFFLINE_VARS[key] for key in NETWORK_SWITCHES),
    }
    import sys

    hub = sys.modules.get("huggingface_hub.constants")
    status["hub_offline"] = bool(getattr(hub, "HF_HUB_OFFLINE", False)) if hub else None
    return status


# Libraries whose deprecation notices and optional-kernel messages are not the user's
# concern (e.g. bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community"
# and transformers' FutureWarnings when an adapter loads). The CLI calls this unless
# --debug; the fine-tune process always does (its output is the run's train.log).
QUIET_LIBRARIES = ("transformers", "peft", "bitsandbytes", "accelerate", "torch",
                   "huggingface_hub", "datasets", "gguf")


def quiet_libraries() -> None:
    import logging
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")  # library bars (read when tqdm is imported)
    pattern = "|".join(QUIET_LIBRARIES)
    warnings.filterwarnings("ignore", module=rf"({pattern})(\.|$)")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
