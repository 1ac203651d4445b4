"""A minimal progress bar with an ETA on stderr for long conversions (by default only on a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total, label, enabled=None, min_total=40):
        if enabled is None:
            enabled = sys.stderr.isatty() and total >= min_total
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.n = 0
        self._last = 0.0
        self._start = time.monotonic()

    def step(self, what=""):
        self.n += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.05 and self.n < self.total:
            return
        self._last = now
        width = 30
        filled = int(width * self.n / self.total)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {self.n}/{self.total} {eta_text(now - self._start, self.n, self.total)} "
                         f"{what[:30]:<30}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


def eta_text(elapsed, done, total):
    """'ETA 1m05s' from the time spent on ``done`` of ``total`` steps; 'ETA --' before the first."""
    if done <= 0 or done > total:
        return "ETA --   "
    left = int(round(elapsed / done * (total - done)))
    return f"ETA {left // 60}m{left % 60:02d}s" if left >= 60 else f"ETA {left}s".ljust(9)
