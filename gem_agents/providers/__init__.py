"""Model providers: each registers a `Provider` (gem_agents/registry.py) turning a RoleConfig into a completer.

A completer is `(messages, CallSpec) -> (message, usage)`; how to add a provider: README.md here.
"""
