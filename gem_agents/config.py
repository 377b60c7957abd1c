"""Run configuration: YAML validated by pydantic; unknown keys are rejected with their path.

One block per role (`filter`, `extract`, `task`, `user`, `assistant`, `tool_env`, `refine`, the optional `judge`, and the
one-shot `synthesizer`) picks a provider and a model; the rest sets rollouts, refinement, limits
and concurrency. The defaults here are the offline mode; `configs/*.yaml` are the shipped presets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from gem_agents import registry
from gem_agents.io import (
    MAX_CONFIG_BYTES,
    InputError,
    load_yaml,
    looks_like_credential,
    read_text,
    register_secret_env,
)

ROLE_NAMES = ("filter", "extract", "task", "user", "assistant", "tool_env", "refine", "synthesizer", "judge")
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The error type of a provider's own key; parse_config reports it at the key's path like any other.
PROVIDER_SETTING = "provider_setting"


class RoleConfig(BaseModel):
    """Which provider and model plays one role, and how to talk to it.

    The fields here are those every provider shares. A provider adds its own keys (e.g. `model_path`
    for `local`, `http_client` for `openai`) through the `settings` model it registers
    (gem_agents/registry.py, `Provider`): they are validated by that model, unknown keys rejected,
    and become attributes of this object (`cfg.model_path`).
    """

    # Keys not declared here are allowed only as the provider's own settings (checked below).
    model_config = ConfigDict(extra="allow")

    provider: str = "scripted"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="name of the environment variable with the key")
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=1024, gt=0)
    concurrency: int = Field(default=8, gt=0)
    timeout_s: float = Field(default=60, gt=0)
    max_retries: int = Field(default=3, ge=0)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    structured_output: Literal["auto", "json_schema", "tagged"] = "auto"
    draft: Literal["none", "offline"] = Field(default="none", description="extract/task: 'offline' = the model "
                                              "revises the rule-based draft (stages/draft_revise.py; small models)")
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _provider_settings(cls, data: Any) -> Any:
        """Validate the provider's own keys with its registered settings model and fill their defaults."""
        if not isinstance(data, dict):
            return data
        name = data.get("provider", "scripted")
        if not isinstance(name, str):
            raise PydanticCustomError("provider", "provider must be a name")
        try:
            spec = registry.provider(name)
        except registry.RegistryError as exc:
            raise PydanticCustomError("provider", str(exc)) from None
        own = {k: v for k, v in data.items() if k not in cls.model_fields}
        allowed = spec.settings.model_fields if spec.settings is not None else {}
        unknown = sorted(k for k in own if k not in allowed)
        if unknown:
            keys = ", ".join(allowed) or "none besides the common ones"
            raise PydanticCustomError(PROVIDER_SETTING, "{key}: {msg}", {
                "key": unknown[0], "msg": f"unknown key for provider '{name}' (its own keys: {keys})"})
        if spec.settings is None:
            return data
        try:
            settings = spec.settings.model_validate(own)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise PydanticCustomError(PROVIDER_SETTING, "{key}: {msg}",
                                      {"key": _loc(err["loc"]), "msg": err["msg"]}) from None
        return {**{k: v for k, v in data.items() if k in cls.model_fields}, **settings.model_dump()}

    @model_validator(mode="after")
    def _needs_endpoint(self) -> RoleConfig:
        if self.api_key_env is not None and (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env)
                                             or looks_like_credential(self.api_key_env)):
            # Never echo the value: a key pasted here by mistake must not reach logs.
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, _), "
                             "never the key itself; this value looks like a key or token (not shown)")
        spec = registry.provider(self.provider)
        if spec.validate is not None:
            spec.validate(self)
        return self

    def setting(self, key: str, default: Any = None) -> Any:
        """A provider's own setting, or `default` when this role's provider has no such key."""
        return (self.model_extra or {}).get(key, default)


class RolesConfig(_Strict):
    """The eight roles."""

    filter: RoleConfig = Field(default_factory=RoleConfig)
    extract: RoleConfig = Field(default_factory=RoleConfig)
    task: RoleConfig = Field(default_factory=RoleConfig)
    user: RoleConfig = Field(default_factory=RoleConfig)
    assistant: RoleConfig = Field(default_factory=RoleConfig)
    tool_env: RoleConfig = Field(default_factory=RoleConfig)
    refine: RoleConfig = Field(default_factory=RoleConfig)
    synthesizer: RoleConfig = Field(default_factory=RoleConfig)
    # Optional: scores dialogues with a rubric and decides nl_assertions and unresolved blame
    # (stages/judge.py). Scripted = no judge.
    judge: RoleConfig = Field(default_factory=RoleConfig)


class InputConfig(_Strict):
    """How documents are read."""

    id_field: str = "id"
    text_field: str = "text"
    max_chars: int = Field(default=200_000, gt=0)
    segment_chars: int = Field(default=6000, gt=200)


class Limits(_Strict):
    """Bounds on each document's work."""

    max_user_turns: int = Field(default=24, gt=0)
    max_tool_rounds: int = Field(default=16, gt=0)
    repair_rounds: int = Field(default=2, ge=0)
    reask_rounds: int = Field(default=1, ge=0)
    max_segments: int = Field(default=4, gt=0)
    max_tools: int = Field(default=64, gt=0)
    doc_timeout_s: float | None = Field(default=None, gt=0, description="a document still running after this "
                                                                         "many seconds ends as failed")


class Concurrency(_Strict):
    """How much runs at once."""

    documents: int = Field(default=4, gt=0)
    rollouts: int = Field(default=8, gt=0)


class RunConfig(_Strict):
    """A whole run."""

    # A registered pipeline (`gem_agents/stages/pipelines.py`, or a plugin's); `gem run` checks the name
    # against the registry before any document is read.
    pipeline: str = Field(default="full", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    seed: int = 0
    rollouts: int = Field(default=2, ge=1)
    tasks_per_env: int = Field(default=3, ge=1, description="tasks the `task` role writes per environment; "
                                                           "each valid task is simulated `rollouts` times")
    refine_rounds: int = Field(default=1, ge=0)
    refine_max_requests: int = Field(default=6, ge=2, le=30, description="the most requests (the original's "
                                     "included) a composed refined task holds: what one person asks in a session")
    refine_ops: list[str] = Field(default_factory=lambda: ["chain_goals", "add_tools", "withhold_info",
                                                           "plan_errors", "change_mind", "state_dependency"])
    prefilter: bool = True
    cache: bool = True
    roles: RolesConfig = Field(default_factory=RolesConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    limits: Limits = Field(default_factory=Limits)
    concurrency: Concurrency = Field(default_factory=Concurrency)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key path."""


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a config mapping; errors name `source` and each offending key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            loc = err["loc"]
            if err["type"] == PROVIDER_SETTING:
                loc, what = (*loc, err["ctx"]["key"]), err["ctx"]["msg"]
            lines.append(f"{source}: {_loc(loc)}: {what}")
        raise ConfigError("\n".join(lines)) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{source}: unusable value ({type(exc).__name__})") from None
    # From here on, the values of the key variables this config names are redacted from every output.
    register_secret_env(getattr(cfg.roles, r).api_key_env for r in ROLE_NAMES)
    return cfg


def load_config(path: str | Path | None) -> RunConfig:
    """Read and validate a YAML config (None → the built-in offline defaults)."""
    if path is None:
        return RunConfig()
    p = Path(path)
    if not p.exists() and not p.is_absolute() and (REPO_CONFIGS / p.name).exists():
        p = REPO_CONFIGS / p.name
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"{p}: no such config file")
    try:
        text = read_text(p, "config", max_bytes=MAX_CONFIG_BYTES)
        data = load_yaml(text, str(p))  # safe types only; alias expansion and size bounded
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, str(p))
