"""LangGraph state machines: the dialogue simulator, the per-document pipeline, checkpointing
and stepping. Roles arrive as injected policies; nothing here imports gem_agents."""
