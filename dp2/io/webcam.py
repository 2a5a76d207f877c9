"""Live webcam input and an on-screen sink.

The source keeps only the newest camera frame (a background thread reads the
device continuously), so a slow anonymizer drops frames instead of lagging
further and further behind.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Callable, Iterator

import numpy as np
import torch

from ..structures import Frame
from .images import resize_max_res

__all__ = ["WebcamError", "WebcamSource", "WindowSink", "window_unavailable"]

logger = logging.getLogger(__name__)


class WebcamError(RuntimeError):
    """The camera could not be opened or stopped delivering frames."""


def _open_cv2(index: int):
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old_level = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_SILENT)  # OpenCV's own lines about a missing camera; ours says it
    try:
        cap = cv2.VideoCapture(index)
        opened = cap.isOpened()
    finally:
        if log is not None:
            log.setLogLevel(old_level)
    if not opened:
        raise WebcamError(f"cannot open webcam {index} (is a camera connected and free?)")
    return cap


def window_unavailable() -> str | None:
    """Why no OpenCV window can be shown here (for ``-v`` and ``--webcam``), or None if one can.

    Checked before a run: OpenCV's Qt backend aborts the whole process (SIGABRT) when it finds no
    display, before anything is written.
    """
    try:
        import cv2
    except ImportError as e:
        return f"OpenCV cannot be imported ({e})"
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui is not None and gui.group(1).upper() == "NONE":
        return "this OpenCV build has no GUI (opencv-python-headless?)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display ($DISPLAY and $WAYLAND_DISPLAY are unset)"
    return None


class WebcamSource:
    """Frames from a capture device (anything with ``read() -> (ok, bgr_array)`` and ``release()``).

    Args:
        index: camera index for OpenCV.
        max_res: ``--max-res`` applied to each frame.
        capture_factory: ``index -> capture``; defaults to ``cv2.VideoCapture``. Tests pass a fake.
        max_failures: consecutive failed reads before giving up.
    """

    def __init__(self, index: int = 0, *, max_res: int | None = None,
                 capture_factory: Callable[[int], object] | None = None, max_failures: int = 50) -> None:
        self.index = index
        self.max_res = max_res
        self.capture = (capture_factory or _open_cv2)(index)
        self.max_failures = max_failures
        self._latest: tuple[int, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._ended = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._reader, name=f"webcam-{index}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        failures, count = 0, 0
        while not self._stopped:
            ok, bgr = self.capture.read()
            if not ok or bgr is None:
                failures += 1
                if failures >= self.max_failures:
                    break
                time.sleep(0.01)
                continue
            failures = 0
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = (count, bgr)
                count += 1
                self._cond.notify()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        start = time.perf_counter()
        while True:
            with self._cond:
                while self._latest is None and not self._ended and not self._stopped:
                    self._cond.wait(timeout=0.5)
                if self._latest is None:
                    return
                index, bgr = self._latest
                self._latest = None
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            image = resize_max_res(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), self.max_res)
            yield Frame(image=image, index=index, time_s=time.perf_counter() - start, source=f"webcam:{self.index}")

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=2)
        release = getattr(self.capture, "release", None)
        if release is not None:
            release()
        if self.dropped:
            logger.info("webcam: dropped %d frames to stay live", self.dropped)


class WindowSink:
    """Shows results with a running FPS counter; returns False (stop) when ``q`` or Esc is pressed.

    Args:
        title: window title.
        show: ``(bgr_array) -> key code``; defaults to an OpenCV window. Tests pass a fake.
    """

    def __init__(self, title: str = "dp2", show: Callable[[np.ndarray], int] | None = None) -> None:
        self.title = title
        self._show = show or self._cv2_show
        self._times: list[float] = []

    def _cv2_show(self, bgr: np.ndarray) -> int:
        import cv2

        cv2.imshow(self.title, bgr)
        return cv2.waitKey(1) & 0xFF

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def __call__(self, frame: Frame, result: torch.Tensor) -> bool:
        import cv2

        self._times = (self._times + [time.perf_counter()])[-30:]
        bgr = np.ascontiguousarray(result.permute(1, 2, 0).numpy()[:, :, ::-1])
        cv2.putText(bgr, f"{self.fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2, cv2.LINE_AA)
        key = self._show(bgr)
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._show == self._cv2_show:
            try:
                import cv2

                cv2.destroyWindow(self.title)
            except Exception:  # no window was ever opened (headless)
                pass
