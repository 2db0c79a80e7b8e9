"""Benchmark bodies behind `mimir bench ...` (run them through the CLI, or `python -m bench.<name>`)."""
