"""Loaded by every Python subprocess the tests start (PYTHONPATH points here), so the
CLI, the fine-tune job and the app run under the same network guard as the tests."""

import os
import runpy

_guard = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netguard.py")
if os.environ.get("SLMCHAT_NETGUARD") == "1" and os.path.exists(_guard):
    runpy.run_path(_guard)["install"]()
