"""Pick each dialogue role's policy from the run config: scripted, or a model through the hub."""

from __future__ import annotations

from gem_agents.models.hub import ModelHub
from gem_agents.policies.chat import (
    assistant_prompt,
    chat_assistant,
    chat_prompts_hash,
    chat_tool_env,
    chat_user,
)
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.policies.scripted_user import scripted_user
from graphs.roles import Roles


def make_roles(hub: ModelHub | None) -> Roles:
    """The Roles for rollouts; any role may be scripted while the others use models.

    Every dialogue opens with the assistant's system prompt (policy + context), scripted or not, so
    exported trajectories carry what a trained assistant would be told.
    """
    if hub is None:
        return Roles(user=scripted_user, assistant=scripted_assistant, name="scripted", system=assistant_prompt)
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
