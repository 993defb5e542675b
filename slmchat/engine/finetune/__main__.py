"""The fine-tune process entry::

    python -m slmchat.engine.finetune RUN_DIR
    accelerate launch [--config_file cfg.yaml] -m slmchat.engine.finetune RUN_DIR

It reads only ``RUN_DIR/args.json`` and writes status, progress and checkpoints there.
A run always continues from its newest complete checkpoint, so starting it again resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmchat.engine.finetune")
    parser.add_argument("run_dir", type=Path)
    ns = parser.parse_args(argv)
    from slmchat.engine.offline import quiet_libraries

    quiet_libraries()  # library notices (e.g. "pip install kernels") are not the run's log
    from slmchat.engine.finetune.job import run_job

    result = run_job(ns.run_dir)
    state = result.get("state")
    print(f"slmchat finetune: {state}: {result.get('message', '')}", file=sys.stderr)
    return 0 if state in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
