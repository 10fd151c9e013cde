"""Measuring probes shared by run.py and notebook.py: RSS (current, peak, sampled), CPU
seconds, other processes' load and I/O, from /proc (Linux).

Standard library only: the notebook baseline imports this before its first measurement
and nothing else of ours, so its figures carry none of the pipeline's imports.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def current_rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_SIZE


def peak_rss() -> int:
    """High-water mark of RSS since start or since the last :func:`reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_io() -> dict[str, int]:
    """Bytes this process read from and wrote to storage (page cache misses, spills)."""
    out = {"read_bytes": 0, "write_bytes": 0}
    with contextlib.suppress(OSError), open("/proc/self/io") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            if key in out:
                out[key] = int(value)
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy (from /proc/stat), so that a
    stage can report how much CPU other processes took while it ran (a noisy host)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def dir_bytes(path: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                total += (
                    entry.stat(follow_symlinks=False).st_size
                    if entry.is_file()
                    else dir_bytes(Path(entry.path))
                    if entry.is_dir()
                    else 0
                )
    except OSError:
        pass
    return total


class Sampler(threading.Thread):
    """Samples RSS (and DuckDB's spill directory) every ``interval`` seconds; the
    maxima are reset per stage by :meth:`reset`."""

    def __init__(self, spill_dir: Path | None = None, interval: float = 0.05):
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.spill_dir = spill_dir
        self.max_rss = 0
        self.max_spill = 0
        self.samples = 0
        self._halt = threading.Event()

    def reset(self) -> None:
        self.max_rss = current_rss()
        self.max_spill = 0
        self.samples = 0

    def run(self) -> None:
        tick = 0
        while not self._halt.wait(self.interval):
            self.max_rss = max(self.max_rss, current_rss())
            self.samples += 1
            tick += 1
            # The spill directory is walked every 4th tick (200 ms): it can hold many files.
            if self.spill_dir is not None and tick % 4 == 0:
                self.max_spill = max(self.max_spill, dir_bytes(self.spill_dir))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used."""
    t = os.times()
    return t.user + t.system
