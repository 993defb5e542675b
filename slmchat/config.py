"""Typed settings: ``settings.toml`` in the user config dir, overridden by SLMCHAT_* env.

Nested sections map to env variables with a double underscore, e.g.
``SLMCHAT_GENERATION__TEMPERATURE=0.2``. A malformed file never stops the app: the
loader returns defaults plus a one-line message saying what was wrong.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from slmchat.engine.fsutil import write_text_atomic
from slmchat.engine.generation.sampling import RANGES, SamplingParams
from slmchat.engine.mcp.client import ServerSpec
from slmchat.engine.model import remote as remote_profiles
from slmchat.engine.model.spec import Runtime
from slmchat.errors import InvalidParameterError

SETTINGS_FILE = "settings.toml"


class ModelSettings(BaseModel):
    path: str = Field("default", description="Model to load at start: 'default', a folder or a .gguf file")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Weights dtype")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    quant: Literal["none", "8bit", "4bit", "cpu-int8"] = Field("none", description="Quantization")
    adapter: str | None = Field(None, description="LoRA adapter folder applied on the model")
    runtime: Runtime = Field(
        "auto", description="Chat runtime: auto (llama.cpp for GGUF, ONNX int8 for checkpoint "
                            "folders on the CPU, else transformers), llamacpp, onnx, transformers")
    dirs: list[str] = Field(default_factory=list, description="Extra folders searched for models")


def _sampling(name: str, description: str = "") -> Any:
    """A settings field whose default and bounds come from the engine's one definition."""
    r = RANGES[name]
    default = getattr(SamplingParams(), name)
    b = r.pydantic_bounds()
    return Field(default, description=description or f"{r.label}: {r.hint}",
                 gt=b.get("gt"), ge=b.get("ge"), lt=b.get("lt"), le=b.get("le"))


class GenerationSettings(BaseModel):
    system_prompt: str = Field("", description="Default system prompt for new conversations")
    temperature: float = _sampling("temperature", "0 = greedy; 0.2 as SmolLM2's card advises")
    top_p: float = _sampling("top_p")
    top_k: int = _sampling("top_k")
    min_p: float = _sampling("min_p")
    repetition_penalty: float = _sampling("repetition_penalty")
    max_new_tokens: int = _sampling("max_new_tokens")
    seed: int | None = _sampling("seed", "empty = a new random seed per reply")
    speculative: str = Field(
        "auto", description="Speculative decoding: auto (prompt lookup where the runtime "
                            "verifies drafts exactly), off, lookup, draft or draft:MODEL")

    @field_validator("speculative")
    @classmethod
    def _speculative_mode(cls, value: str) -> str:
        from slmchat.engine.generation.speculative import parse

        try:
            return parse(value).label
        except InvalidParameterError as exc:
            raise ValueError(str(exc)) from None


class UISettings(BaseModel):
    theme: str = Field("textual-dark", description="Textual theme name")
    show_sidebar: bool = True
    tint_accepted_drafts: bool = Field(
        False, description="Tint the text of accepted draft tokens (speculative decoding) in "
                           "the chat; such replies then show as plain text, not Markdown")
    language: str = Field(
        "auto", description="UI language: en, ja (a file in slmchat/i18n), or auto (the "
                            "locale's: LC_ALL, LC_MESSAGES or LANG, when it has one; else English)")
    keys: dict[str, str] = Field(
        default_factory=dict,
        description='Key bindings by id, e.g. { "chat.regenerate" = "f6" } (README: Keys)')

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        from slmchat.i18n import SETTING_VALUES  # the language files there are

        if value not in SETTING_VALUES:
            raise ValueError(f"use one of {', '.join(repr(v) for v in SETTING_VALUES)}")
        return value


class McpServerSettings(BaseModel):
    """One ``[[mcp]]`` table: an MCP server the chat may offer tools from (stdio only).
    None are configured by default, so nothing runs and nothing connects until one is."""

    name: str = Field(min_length=1, max_length=64, description="Name shown in the app and `slmchat mcp list`")
    command: str = Field(min_length=1, description="The program that runs the server, e.g. 'uvx' or 'python'")
    args: list[str] = Field(default_factory=list, description="Its arguments")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables for it (besides PATH, HOME and "
                                          "a few more safe ones; nothing else is passed on)")
    cwd: str | None = Field(None, description="Working directory (default: the current one)")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="Seconds one tool call may take")
    enabled: bool = Field(True, description="false: keep the entry but do not start the server")

    def spec(self) -> ServerSpec:
        return ServerSpec(self.name, self.command, tuple(self.args), tuple(self.env.items()),
                          str(Path(self.cwd).expanduser()) if self.cwd else None, self.timeout_s)


class RemoteSettings(BaseModel):
    """One ``[[remote]]`` entry: a served engine reached over its OpenAI or Ollama API.
    The key itself is never stored: ``api_key_env`` names the variable that holds it."""

    model_config = ConfigDict(extra="forbid")  # an "api_key = ..." line is refused

    name: str = Field(description="Short name: models show as NAME: model, --model NAME:model",
                      pattern=remote_profiles.NAME_RE.pattern)
    base_url: str = Field(description="The API root, e.g. http://gpu-box:8000/v1 (vLLM, SGLang, "
                                      "llama-server, slmchat serve) or http://host:11434 (Ollama)")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key)",
        pattern=remote_profiles.ENV_RE.pattern)
    kind: Literal["openai", "ollama"] = Field("openai", description="API the server speaks")
    models: list[str] = Field(default_factory=list,
                              description="Only these of the server's models (empty: all)")
    timeout_s: float = Field(120.0, gt=0, le=3600,
                             description="Longest wait for the next bytes of a reply (s)")

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("api_key" in data or "key" in data):
            raise ValueError("keys are never stored in settings.toml: put the key in an "
                             "environment variable and name it in api_key_env")
        return data

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = remote_profiles.url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def profile(self) -> remote_profiles.RemoteProfile:
        return remote_profiles.RemoteProfile(
            name=self.name, base_url=self.base_url, api_key_env=self.api_key_env,
            kind=self.kind, models=tuple(self.models), timeout_s=self.timeout_s)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLMCHAT_", env_nested_delimiter="__", extra="ignore",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)  # type: ignore[arg-type]
    generation: GenerationSettings = Field(default_factory=GenerationSettings)  # type: ignore[arg-type]
    ui: UISettings = Field(default_factory=UISettings)  # type: ignore[arg-type]
    mcp: list[McpServerSettings] = Field(default_factory=list, description="MCP servers ([[mcp]])")
    remote: list[RemoteSettings] = Field(default_factory=list)

    @field_validator("mcp")
    @classmethod
    def _unique_names(cls, servers: list[McpServerSettings]) -> list[McpServerSettings]:
        names = [s.name for s in servers]
        if dup := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"two [[mcp]] servers are named {dup!r}")
        return servers

    def mcp_servers(self) -> list[ServerSpec]:
        """The enabled MCP servers, as the engine's client takes them."""
        return [s.spec() for s in self.mcp if s.enabled]

    @model_validator(mode="after")
    def _unique_remotes(self) -> Settings:
        names = [r.name for r in self.remote]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"remote profile names must be unique ({', '.join(twice)})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the TOML file's contents) < env: environment variables win.
        return (env_settings, init_settings)


def settings_path() -> Path:
    from slmchat.paths import config_dir

    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> tuple[Settings, str | None]:
    """Return (settings, problem). ``problem`` is a one-line message or None.

    The ``[[remote]]`` profiles read become the engine's (engine/model/remote.use_profiles),
    so a remote model named by a spec finds its server; none read: none known."""
    settings, problem = _load(path)
    remote_profiles.use_profiles([r.profile() for r in settings.remote])
    return settings, problem


def _load(path: Path | None) -> tuple[Settings, str | None]:
    path = path or settings_path()
    data: dict[str, Any] = {}
    problem: str | None = None
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            problem = f"ignoring malformed settings file {path}: {exc}"
            data = {}
        except RecursionError:  # e.g. 100k nested arrays: tomllib recurses per level
            problem = f"ignoring malformed settings file {path}: nested too deeply"
            data = {}
    try:
        return Settings(**data), problem
    except (ValidationError, SettingsError, RecursionError) as exc:
        msg = f"ignoring invalid settings ({_reason(exc)}) from {path} or SLMCHAT_* env"
        try:
            return Settings(), msg
        except (ValidationError, SettingsError, RecursionError):
            # the environment itself is invalid (SLMCHAT_UI='{not json'): pure defaults
            saved = {k: v for k, v in os.environ.items() if k.startswith("SLMCHAT_")}
            for key in saved:
                if "__" in key or key in ("SLMCHAT_MODEL", "SLMCHAT_GENERATION", "SLMCHAT_UI",
                                          "SLMCHAT_REMOTE"):
                    os.environ.pop(key)
            try:
                return Settings(), msg
            finally:
                os.environ.update(saved)


def _reason(exc: Exception) -> str:
    """One short line for why the settings did not validate."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        return f"{where}: {err.get('msg')}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    # SettingsError: 'error parsing value for field "ui" from source "EnvSettingsSource"'
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table; keys quoted (ids hold dots)
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write settings as TOML (atomically, mode 0600). None values are omitted."""
    path = path or settings_path()
    lines: list[str] = []
    for section, model in (("model", settings.model), ("generation", settings.generation),
                           ("ui", settings.ui)):
        lines.append(f"[{section}]")
        for key, value in model.model_dump().items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    for server in settings.mcp:  # kept as written: the app never drops the user's servers
        lines.append("[[mcp]]")
        lines += [f"{key} = {_toml_value(value)}"
                  for key, value in server.model_dump().items() if value is not None]
        lines.append("")
    for remote in settings.remote:  # [[remote]] tables: a name, never a key
        lines.append("[[remote]]")
        for key, value in remote.model_dump().items():
            if value is not None and value != []:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "\n".join(lines), private=True)
