"""The `openai` provider: any OpenAI-compatible endpoint (OpenAI, `vllm serve`, llama.cpp's server, SGLang).

This file is its registration: the keys an `openai` role may add, what it checks before a run, and
the factory that picks the transport — `openai_provider.py` (ChatOpenAI, the default) or
`openai_direct.py` (`http_client: direct`, pooled aiohttp). Both are imported only when a client is
built: the SDKs take seconds to import, and a config that never calls a model must not pay that.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gem_agents.config import RoleConfig
from gem_agents.models.client import Completer
from gem_agents.registry import Provider, register


class OpenAISettings(BaseModel):
    """Keys of an `openai` role beyond the common ones."""

    model_config = ConfigDict(extra="forbid")

    http_client: Literal["langchain", "direct"] = Field(
        default="langchain", description="'direct' posts to /chat/completions over one pooled client per "
                                         "endpoint (no SDK transform, no LangChain round trip: less CPU per call)")


def validate(cfg: RoleConfig) -> None:
    """Raise ValueError when the role cannot name a model."""
    if not cfg.model:
        raise ValueError("provider 'openai' needs a 'model'")


def preflight(cfg: RoleConfig) -> list[str]:
    """An `openai` role with nowhere to go: no base_url and no key, or a key variable that is not set."""
    if not cfg.base_url and not cfg.api_key_env:
        return ["provider 'openai' has no base_url, so it would call api.openai.com, and no api_key_env names "
                "the variable holding its key; set base_url to your server (e.g. http://localhost:8000/v1 for "
                "`vllm serve`) or api_key_env"]
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        return [f"api_key_env: environment variable {cfg.api_key_env} is not set"]
    return []


def completer(cfg: RoleConfig, role: str = "") -> Completer:
    """The completer over the transport the role asks for (`http_client`)."""
    if cfg.setting("http_client") == "direct":
        from gem_agents.providers.openai_direct import direct_completer

        return direct_completer(cfg)
    from gem_agents.providers.openai_provider import openai_completer

    return openai_completer(cfg)


def close() -> None:
    """Close the direct transport's connection pools (only it keeps pools of its own, and only once loaded)."""
    direct = sys.modules.get("gem_agents.providers.openai_direct")
    if direct is not None:
        direct.close_pools()


register("provider", "openai", Provider(
    name="openai", factory=completer, settings=OpenAISettings, capabilities=frozenset({"tools", "json_schema"}),
    validate=validate, preflight=preflight, endpoint=lambda cfg: cfg.base_url or "", close=close,
    description="any OpenAI-compatible server (OpenAI, `vllm serve`, llama.cpp's server, SGLang)"))
