"""The tool runtime: specs, argument validation, the stateful simulated backend, execution
graphs and trajectory verification. No LLM and no LangGraph in here."""
