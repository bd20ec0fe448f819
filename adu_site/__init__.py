"""ADU, the Air-gapped Data Utility: the Django project package."""

__version__ = "0.1.0"

import os

# ADU does no linear algebra, but numpy's OpenBLAS starts a spinning thread per core;
# on a machine whose cores the export shares with the database, that costs real time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Arrow's C++ code (the Parquet writer's buffers among it) allocates from this pool, not
# from the one pyarrow.set_memory_pool sets: with mimalloc, its default, lineitem's export
# peaked 30-70 MB higher (exports/engine/memory.py tunes jemalloc).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
