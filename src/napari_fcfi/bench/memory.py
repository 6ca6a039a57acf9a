"""Process memory: current and peak RSS, and handing freed heap memory back to the OS."""

from __future__ import annotations

import contextlib
import gc
import sys
import threading


def current_rss_bytes() -> int:
    """Resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so RSS increases of one run are not hidden
    by memory an earlier, larger run left in the allocator."""
    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRssSampler:
    """Context manager sampling this process's RSS every ``interval_s`` in a background thread.

    ``peak_bytes`` is the highest value seen (including the value at entry and exit). Sampling
    cannot see a spike shorter than the interval; the network's activations live for a whole
    forward pass, so a few milliseconds are enough.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._process = psutil.Process()
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def increase_mb(self) -> float:
        """Peak minus entry RSS in MiB, rounded to 0.1 (what the reports show)."""
        return round((self.peak_bytes - self.start_bytes) / 2**20, 1)

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRssSampler:
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
