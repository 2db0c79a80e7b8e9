"""The camera-features producer worker (see :mod:`workers.features.worker`)."""
