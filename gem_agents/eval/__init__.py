"""`gem eval`: the generated environments (and τ²/BFCL tasks) as a benchmark for any assistant."""
