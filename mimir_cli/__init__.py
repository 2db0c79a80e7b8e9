"""Mimir's command line: the one place that wires ``mimir``, ``mimir-supervisor`` and ``mimir-worker`` together."""
