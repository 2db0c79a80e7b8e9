"""The entry point the supervisor starts its workers through: ``python -m mimir_cli.worker_main``.

The worker's whole job comes from the rig contract: its spec
(:data:`mimir.topology.WorkerSpec`, msgspec JSON) is in the environment
variable ``MIMIR_WORKER_SPEC``. The worker first arranges to die with its
supervisor (:func:`mimir.process_control.die_with_parent`), then runs the
spec until stopped. Exit codes: 0 clean stop, 1 runtime failure, 2 bad input
(the spec, a device, shared memory that does not fit), each with one line on
stderr.
"""

from __future__ import annotations

import os
import sys

import msgspec

from mimir.process_control import die_with_parent
from mimir.topology import (
    SPEC_ENV, SUPERVISOR_PID_ENV, AudioWorkerSpec, CameraWorkerSpec, FeatureWorkerSpec, SyncWorkerSpec,
    decode_worker_spec,
)

__all__ = ["run_spec", "main"]


def run_spec(spec) -> int:
    """Run one worker spec in this process; return its exit code."""
    if isinstance(spec, CameraWorkerSpec):
        from workers.camera.worker import serve_spec

        return serve_spec(spec)
    if isinstance(spec, AudioWorkerSpec):
        from workers.audio.errors import AudioError
        from workers.audio.runner import run_spec as run_audio

        try:
            return run_audio(spec)
        except AudioError as exc:
            print(f"mimir-worker audio: error: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
    if isinstance(spec, SyncWorkerSpec):
        from workers.sync.worker import run_sync_spec

        return run_sync_spec(spec)
    if isinstance(spec, FeatureWorkerSpec):
        from workers.features.worker import run_features_spec

        return run_features_spec(spec)
    raise TypeError(f"unknown worker spec {type(spec).__name__}")


def main() -> int:
    text = os.environ.get(SPEC_ENV)
    if not text:
        print(f"mimir worker: {SPEC_ENV} is not set; run workers by hand with `mimir-worker camera|audio|sync`",
              file=sys.stderr)
        return 2
    try:
        spec = decode_worker_spec(text)
    except msgspec.DecodeError as exc:
        print(f"mimir worker: {SPEC_ENV} is not a worker spec: {exc}", file=sys.stderr)
        return 2
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    die_with_parent(parent_pid=int(supervisor) if supervisor else None)
    return run_spec(spec)


if __name__ == "__main__":
    sys.exit(main())
