"""Talking to models: message conversion, the call cache, token accounting and the client."""
