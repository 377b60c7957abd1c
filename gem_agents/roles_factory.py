"""Pick each dialogue role's policy from the run config: registered role sets, scripted or chat.

A role set is a `role` in the registry (gem_agents/registry.py): a function `(hub) -> Roles` that
returns the user, assistant and tool-environment policies one rollout runs with. `scripted` plays
every role without a model; `chat` gives each role with a model in the config its chat policy and
leaves the others scripted. A plugin registers its own set (another user simulator, say) the same way.
"""

from __future__ import annotations

from gem_agents import registry
from gem_agents.models.hub import ModelHub
from gem_agents.policies.chat import (
    assistant_prompt,
    chat_assistant,
    chat_prompts_hash,
    chat_tool_env,
    chat_user,
)
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.registry import register
from gem_agents.user.scripted import scripted_user
from graphs.roles import Roles


@register("role", "scripted")
def scripted_roles(hub: ModelHub | None = None) -> Roles:
    """Every role scripted: the deterministic user and assistant, the backend alone as tool environment."""
    return Roles(user=scripted_user, assistant=scripted_assistant, name="scripted", system=assistant_prompt)


@register("role", "chat")
def chat_roles(hub: ModelHub | None) -> Roles:
    """Each role the config gives a model is played by it; the others stay scripted."""
    if hub is None:
        return scripted_roles(hub)
    user_client = hub.client("user")
    assistant_client = hub.client("assistant")
    env_client = hub.client("tool_env")
    user = chat_user(user_client) if user_client else scripted_user
    assistant = chat_assistant(assistant_client) if assistant_client else scripted_assistant
    tool_env = chat_tool_env(env_client) if env_client else None
    kinds = [("user", user_client), ("assistant", assistant_client), ("tool_env", env_client)]
    name = "+".join(f"{role}:{'model' if c else 'scripted'}" for role, c in kinds if role != "tool_env" or c)
    models = sorted({c.model for _, c in kinds if c})
    return Roles(user=user, assistant=assistant, tool_env=tool_env,
                 name="scripted" if not models else name, model=",".join(models),
                 prompts_hash=chat_prompts_hash() if models else "", system=assistant_prompt)


def make_roles(hub: ModelHub | None, name: str | None = None) -> Roles:
    """The Roles for rollouts: the registered set `name` (default: `chat` with a hub, else `scripted`).

    Every dialogue opens with the assistant's system prompt (policy + context), scripted or not, so
    exported trajectories carry what a trained assistant would be told.
    """
    return registry.get("role", name or ("chat" if hub is not None else "scripted"))(hub)
