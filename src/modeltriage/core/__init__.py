"""The routing core: config schema and loading, the decision, pure policy, encoders, the
index and input checks. Imports nothing of modeltriage but ``errors``."""
