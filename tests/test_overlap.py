import threading
import time

import pytest

from dp2.io.overlap import BackgroundWriter, prefetch


def test_prefetch_keeps_order_and_bounds_readahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    out = []
    for item in prefetch(source(), size=4):
        time.sleep(0.001)
        assert len(produced) - len(out) <= 4 + 2  # queue + one in hand on each side
        out.append(item)
    assert out == list(range(50))


def test_prefetch_forwards_errors_and_stops_early():
    def broken():
        yield 1
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        list(prefetch(broken()))
    gen = prefetch(iter(range(10_000)), size=2)
    assert next(gen) == 0
    gen.close()  # must not hang on a full queue
    assert not [t for t in threading.enumerate() if t.name == "dp2-prefetch"]


def test_background_writer_order_and_errors():
    written = []
    with BackgroundWriter(lambda x: written.append(x), size=2) as w:
        for i in range(20):
            w.submit(i)
    assert written == list(range(20))

    def fail(x):
        raise OSError("disk full")

    w = BackgroundWriter(fail)
    w.submit(1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            w.submit(i)
            time.sleep(0.001)
        w.close()
