"""Role policies: scripted (deterministic, model-free) and chat-model ones, all with one signature."""
