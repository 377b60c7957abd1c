"""The verifier's one home: how a dialogue is executed again, checked and explained.

- `replay.py`: re-execute a transcript's tool calls on a fresh backend (the ground truth of what happened);
- `verify.py`: the verdict — failure codes over execution, claims, communicated values, graph order;
- `components.py`: outcome verification as reward components (state, actions, communicate, nl_assertions);
- `blame.py`: which side (assistant, user simulator, environment, task) a failure is charged to;
- `divergence.py`: where a transcript first departs from the gold plan (`gem replay`);
- `mutations.py`: defective copies of a good transcript, proving the verifier rejects each defect;
- `perturbations.py`: the robustness suite built on the mutations.

The one-shot synthesizer's answer is checked by the same functions (gem_agents/synthesizer/oneshot.py
calls `replay_dialogue` and the `check_*` functions of `verify.py`). See docs/verification.md.
"""
