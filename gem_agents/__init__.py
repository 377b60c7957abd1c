"""gem-agents: the GEM pipeline's roles and stages (filter, extractor, user, assistant, tool
environment, refiner), prompts, model providers and the `gem` CLI."""

__version__ = "0.1.0"
