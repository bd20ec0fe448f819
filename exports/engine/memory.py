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
# Blocks from 4 MB up are mapped and unmapped. Below that they are reused warm: ZSTD takes
# and frees a 1-2 MB workspace for every page it compresses, and at a 1 MB threshold each
# one was a fresh mapping, faulted in page by page (lineitem: 190k page faults, 85k now).
_MMAP_THRESHOLD_BYTES = 4 << 20
# Freed Arrow memory goes back to the system after this long. At 0 every free is an
# madvise call: about 15% more CPU on a large export for no lower peak; at 300 ms the
# next batches' buffers were faulted in again (measured).
JEMALLOC_DECAY_MS = 1000


_libc = None
_frozen = False


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
            # A fixed threshold (not glibc's sliding one): large blocks are mapped and
            # unmapped, never left in a fragmented heap.
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
    them all again every few thousand allocations during an export. Once per process:
    gc.get_freeze_count() walks every frozen object (11 ms a table, measured)."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
