"""Keeps an exporting process's memory flat: allocators that give freed memory back soon.

Live Arrow data stays near 100 MB however large the table; what grows without this is
memory that allocators keep after it is freed (mimalloc's retained pages, glibc's heap
fragmented by 2 MB read buffers from several threads).
"""

import ctypes
import ctypes.util
import gc

import pyarrow as pa

_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20
# Freed Arrow memory goes back to the system after this long. At 0 every free is an
# madvise call: about 15% more CPU on a large export for no lower peak (measured).
JEMALLOC_DECAY_MS = 300


_libc = None


def return_freed_memory():
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(JEMALLOC_DECAY_MS)
    except NotImplementedError:
        pass  # a pyarrow build without jemalloc keeps its default pool
    global _libc
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            libc = ctypes.CDLL(libc_name)
            # A fixed threshold (not glibc's sliding one): blocks of 1 MB and more are
            # mapped and unmapped, never left in a fragmented heap.
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
            _libc = libc if hasattr(libc, "malloc_trim") else None
        except (OSError, AttributeError):
            pass  # not glibc


def trim():
    """Give the heap's free pages back to the system (after each row group)."""
    if _libc is not None:
        _libc.malloc_trim(0)


def freeze_startup_objects():
    """Leave the objects of the process's start (modules, settings, the app registry:
    most of its objects) out of the garbage collector's full passes, which otherwise walk
    them all again every few thousand allocations during an export."""
    if not gc.get_freeze_count():
        gc.freeze()
