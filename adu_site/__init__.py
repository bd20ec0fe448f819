"""ADU, the Air-gapped Data Utility: the Django project package."""

__version__ = "0.1.0"

import os

# ADU does no linear algebra, but numpy's OpenBLAS starts a spinning thread per core;
# on a machine whose cores the export shares with the database, that costs real time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
