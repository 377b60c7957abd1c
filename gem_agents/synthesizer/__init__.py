"""The Trajectory Synthesizer: one model writes a whole trajectory from a text in one call.

`format` is the target string such a model writes (and the export's training targets);
`oneshot` asks the `synthesizer` role once and replay-verifies the answer in the simulator;
`train` is the SFT recipe (TRL's SFTTrainer) that distils a run's verified trajectories.
"""
