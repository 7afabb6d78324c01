"""Peak resident memory of a Spark run's process tree, sampled in a thread (benchmarks only; needs psutil).

The tree is this Python process (the Spark driver's Python side), the Spark JVM it launched (driver and, in local
mode, the executors) and the Python workers the JVM forks (``pyspark.daemon`` and its workers: pandas/Arrow
UDFs, ``mapInArrow``). Each sample sums RSS per part; the peaks are kept per part and for the sum of one sample
(the parts do not peak at the same moment, so the sum's peak is at most the sum of the peaks).
"""

from __future__ import annotations

import threading


def tree_part(name: str, parent_name: str) -> str | None:
    """The part a child process counts in: ``jvm`` (a ``java`` process not forked by another one),
    ``python_workers`` (``python*``: ``pyspark.daemon`` and its workers) or ``None`` for everything else.

    The JVM forks short-lived helpers (Hadoop's local file system runs ``chmod``/``ls``, Spark starts
    ``pyspark.daemon``, through fork + exec); until the exec such a child carries the RSS of the whole JVM
    (copy-on-write pages) under the name of the forking Java thread (or ``java``), which would count the JVM twice:
    only processes named ``java`` (not forked by a JVM) and ``python*`` count. The launcher scripts (``bash
    spark-submit``) are small and left out too.
    """
    if name == "java":
        return None if parent_name == "java" else "jvm"
    if name.startswith("python"):
        return "python_workers"
    return None


class TreeMemory:
    """``with TreeMemory() as mem: ...`` then ``mem.peaks_gb()``: peak RSS (GB, 1e9 bytes) of the Python driver,
    the JVM(s), the Python workers and of their sum, sampled every ``every`` seconds."""

    PARTS = ("python_driver", "jvm", "python_workers")

    def __init__(self, every: float = 0.5):
        import psutil

        self._psutil = psutil
        self.me, self.every = psutil.Process(), every
        self.peak = dict.fromkeys((*self.PARTS, "total"), 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, int]:
        now = dict.fromkeys(self.PARTS, 0)
        now["python_driver"] = self.me.memory_info().rss
        for proc in self.me.children(recursive=True):
            try:
                part = tree_part(proc.name(), proc.parent().name())
                if part is not None:
                    now[part] += proc.memory_info().rss
            except (self._psutil.Error, AttributeError):  # a process that just ended
                continue
        now["total"] = sum(now[p] for p in self.PARTS)
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        self.samples += 1
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peaks_gb(self) -> dict[str, float]:
        return {k: round(v / 1e9, 2) for k, v in self.peak.items()}
