"""The sync worker: decodes the active witness on every channel of the rig's audio ring, publishes clock fits.

Process entry: :func:`workers.sync.worker.run_sync_spec` (started by the
supervisor from the rig contract's ``SyncWorkerSpec``); by hand:
``mimir-worker sync`` (:mod:`workers.sync.cli`). The decoding itself is
:mod:`mimir.sync` (a library with no process, ring or config of its own); the
ring layout it publishes is :class:`mimir.descriptors.FitsHeader` +
:class:`mimir.descriptors.FitRow`, which the supervisor reads.
"""
