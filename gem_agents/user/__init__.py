"""The simulated user: the customer a dialogue is run against, scripted or played by a model.

- `scripted.py`: the deterministic user — states the task's goals one by one, answers the
  assistant's questions from the facts the task gives it, confirms, and ends the conversation;
- `dialogue_text.py`: how the user's facts are written as text, and read back (by the scripted
  assistant, which must find exactly what the user typed);
- the model-played user is `chat_user` with `user_prompt` in gem_agents/policies/chat.py (its prompt,
  `policies/prompts/user_system.txt`, is one set with the assistant's and the tool environment's);
- what the user sees of the transcript (roles flipped, no tool traffic) is `graphs/roles.user_view`,
  and its turn in the dialogue graph is `graphs/dialogue.user_node`: the graph never imports
  gem_agents, so those stay beside the graph.

Which user a run gets is decided by gem_agents/roles_factory.py (registered role sets).
"""
