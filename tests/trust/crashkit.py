"""Run a child process with instrumented write steps and SIGKILL it at a chosen one.

The child wraps named functions (``module:Attr.attr`` -> label) so that each call prints
``enter LABEL DETAIL`` / ``leave LABEL DETAIL`` (DETAIL: base names of the path arguments).
When a line matches the kill pattern the child sleeps ``pause`` seconds right there, and
the parent, which reads the same lines, sends SIGKILL: the process dies at that exact
point of the write protocol, with no chance to clean up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(r'''
    import importlib, json, os, re, runpy, sys, time

    PAUSE = float(os.environ["CRASH_PAUSE"])
    AT = re.compile(os.environ["CRASH_AT"])

    def _say(line):
        print(line, flush=True)
        if AT.search(line):
            time.sleep(PAUSE)

    def _detail(args):
        return " ".join(os.path.basename(os.fspath(a)) for a in args
                        if isinstance(a, (str, os.PathLike)))

    def _hook(target, label):
        modname, attr = target.split(":")
        obj = importlib.import_module(modname)
        *owners, name = attr.split(".")
        for o in owners:
            obj = getattr(obj, o)
        orig = getattr(obj, name)

        def wrapper(*a, **k):
            d = _detail(a + tuple(v for v in k.values()))
            _say(f"enter {label} {d}".rstrip())
            out = orig(*a, **k)
            _say(f"leave {label} {d}".rstrip())
            return out

        setattr(obj, name, wrapper)

    for target, label in json.loads(os.environ["CRASH_HOOKS"]):
        _hook(target, label)
    mode, what, *rest = sys.argv[1:]
    if mode == "-c":
        sys.argv = ["-c", *rest]
        exec(compile(what, "<crash-child>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [what, *rest]
        runpy.run_module(what, run_name="__main__")
''')


@dataclass
class KillResult:
    killed: bool  # False: the child finished before the kill point was reached
    lines: list[str]
    returncode: int


def run_and_kill(
    hooks: list[tuple[str, str]], at: str, *, code: str | None = None,
    module: str | None = None, args: tuple[str, ...] = (), nth: int = 1,
    extra_delay: float = 0.0, pause: float = 0.4, timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> KillResult:
    """Start the child, SIGKILL it ``extra_delay`` s after the ``nth`` line matching ``at``."""
    argv = [sys.executable, "-c", CHILD]
    argv += ["-c", code, *args] if code is not None else ["-m", str(module), *args]

    full_env = {**os.environ, **(env or {}), "CRASH_PAUSE": str(pause), "CRASH_AT": at,
                "CRASH_HOOKS": json.dumps(hooks), "SLMCHAT_THREADS": "1",
                "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    errfile = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed below; a pipe could block
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errfile, text=True,
                            env=full_env, cwd=ROOT)
    assert proc.stdout is not None
    pattern = re.compile(at)
    lines: list[str] = []
    seen = 0
    deadline = time.monotonic() + timeout
    killed = False
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if pattern.search(line):
                seen += 1
                if seen == nth:
                    time.sleep(extra_delay)
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(30)
    errfile.seek(0)
    err = errfile.read()
    errfile.close()
    if not killed and proc.returncode != 0:
        raise AssertionError(f"child failed before the kill point {at!r}:\n{err[-3000:]}")
    return KillResult(killed, lines, proc.returncode)
