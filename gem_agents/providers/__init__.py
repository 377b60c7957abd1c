"""Model providers: each turns a RoleConfig into a completer `(messages, CallSpec) -> (message, usage)`."""
