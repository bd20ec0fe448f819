"""Streams with a thread of their own, so that a bundle's two halves use two cores: what
they run (hashing, encrypting, reading and writing files) releases the GIL.

Memory stays flat: at most DEPTH pieces wait between the two threads.
"""

import queue
import threading

DEPTH = 32
_END = None


class Behind:
    """A writer whose `sink.write` runs in a thread of its own. A failure of the sink is
    raised by the next write or by close(); close() waits for every piece to be written."""

    def __init__(self, sink, name: str = "adu-behind"):
        self._sink, self._written, self._failure = sink, 0, None
        self._queue: queue.Queue = queue.Queue(DEPTH)
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self):
        while (data := self._queue.get()) is not _END:
            if self._failure is None:
                try:
                    self._sink.write(data)
                except BaseException as error:  # raised again in the writer's thread
                    self._failure = error

    def write(self, data) -> int:
        if self._failure is not None:
            raise self._failure
        self._queue.put(data if isinstance(data, bytes) else bytes(data))  # it must stay as is
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self):
        pass

    def close(self):
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._failure is not None:
            raise self._failure


class Ahead:
    """A reader of what `read_piece()` returns (b"" at the end), called in a thread of its
    own ahead of the reader. A failure of read_piece is raised by read()."""

    def __init__(self, read_piece, name: str = "adu-ahead"):
        self._read_piece, self._failure = read_piece, None
        self._queue: queue.Queue = queue.Queue(DEPTH)
        self._left = memoryview(b"")
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._fill, name=name, daemon=True)
        self._thread.start()

    def _fill(self):
        try:
            while not self._ended.is_set():
                piece = self._read_piece()
                self._queue.put(piece)
                if not piece:
                    return
        except BaseException as error:  # raised again in the reader's thread
            self._failure = error
            self._queue.put(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            piece = self._queue.get()
            if not piece:
                self._queue.put(piece)  # the end stays the end
                if self._failure is not None:
                    raise self._failure
                return b""
            self._left = memoryview(piece)
        size = len(self._left) if size is None or size < 0 else size
        data, self._left = self._left[:size], self._left[size:]
        return bytes(data)

    def close(self):
        """Stop reading ahead (the reader stopped first, or is done)."""
        self._ended.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()  # room for a piece it may be putting
            except queue.Empty:
                self._thread.join(0.01)
