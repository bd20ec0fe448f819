"""ADU, the Air-gapped Data Utility: the Django project package."""

__version__ = "0.1.0"

import os

# What ADU writes (exported files and their folders, job logs, generated keys, the CA file
# of a connect) is for ADU's own user alone: 0600 files, 0700 folders. Every entry point
# imports this package before it writes anything: manage.py and its commands, the task
# cluster and its workers (forked or spawned, they inherit it), gunicorn (its config file
# imports adu_site too) and the tests.
os.umask(0o077)

# ADU does no linear algebra, but numpy's OpenBLAS starts a spinning thread per core;
# on a machine whose cores the export shares with the database, that costs real time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Arrow's C++ code (the Parquet writer's buffers among it) allocates from this pool, not
# from the one pyarrow.set_memory_pool sets: with mimalloc, its default, lineitem's export
# peaked 30-70 MB higher (exports/engine/memory.py tunes jemalloc).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
