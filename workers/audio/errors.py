"""The audio worker's error types and their exit codes.

Every error a user can cause carries a message that says what was wrong and
what to do about it; the CLI prints the message (no traceback) and exits with
the class's ``exit_code``.
"""

from __future__ import annotations

__all__ = ["AudioError", "AudioConfigError", "BackendUnavailable", "OutputUnavailable", "EngineStateError"]


class AudioError(RuntimeError):
    """Base class of the audio worker's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class AudioConfigError(AudioError, ValueError):
    """Bad input: unknown device, unsupported rate/block/channels, bad option value (exit code 2)."""

    exit_code = 2


class BackendUnavailable(AudioError):
    """A backend's library is missing or cannot load (e.g. no PortAudio): exit code 3."""

    exit_code = 3


class OutputUnavailable(AudioError):
    """The requested output stage cannot be built here (e.g. the witness emitter is not installed): exit code 3."""

    exit_code = 3


class EngineStateError(AudioError):
    """An engine call out of order (start before init, init twice...)."""

    exit_code = 1
