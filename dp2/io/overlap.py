"""Overlap decoding and encoding with the frame loop (bounded queues, constant memory).

Decoding, the detector/generator and encoding each release the GIL for most of their work
(FFmpeg, onnxruntime, torch), so running the decoder and the encoder in their own threads lets
the three overlap. Queues are bounded, so memory stays flat for any video length; errors in a
worker are re-raised in the caller.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["prefetch", "BackgroundWriter"]

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], size: int = 8) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``size`` items ahead.

    The producer stops (without draining the source) when the consumer stops early.

    >>> list(prefetch(range(5), size=2))
    [0, 1, 2, 3, 4]
    """
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as error:  # forwarded to the consumer
            q.put(_Failure(error))

    thread = threading.Thread(target=produce, name="dp2-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


class BackgroundWriter:
    """Calls ``write(*args)`` in a background thread, in order, at most ``size`` calls behind.

    ``close()`` waits for every pending call; an error in ``write`` is re-raised by the next
    ``submit`` or by ``close``. Use as a context manager; on an exception pending calls are dropped.
    """

    def __init__(self, write: Callable[..., object], size: int = 8) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dp2-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            args = self._queue.get()
            if args is _END:
                return
            if self._error is None:
                try:
                    self._write(*args)
                except BaseException as error:
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, *args) -> None:
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        self._raise()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._error = self._error or exc  # stop writing; the caller's error wins
        self._queue.put(_END)
        self._thread.join()
