"""Benchmark instrument, not part of the service: log the garbage collector's pauses of a process.

``bench_serving.py --gc-log FILE`` puts this directory first on the server's ``PYTHONPATH`` and sets
``SCRM_BENCH_GC_LOG``; every Python process started with it then appends one JSON line per collection of at
least 5 ms to ``FILE.<pid>``: ``[unix time, generation, milliseconds, objects collected]``. A collection holds
the GIL, so a pause here is a pause of the worker's event loop. Without the variable this module does nothing.
"""

import os

if os.environ.get("SCRM_BENCH_GC_LOG"):
    import gc
    import json
    import time

    _out = open(f"{os.environ['SCRM_BENCH_GC_LOG']}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    _started: list[float] = []

    def _watch(phase: str, info: dict) -> None:
        if phase == "start":
            _started[:] = [time.perf_counter()]
        elif _started:
            ms = (time.perf_counter() - _started[0]) * 1000
            if ms >= 5:
                _out.write(json.dumps([round(time.time(), 3), info.get("generation"), round(ms, 1),
                                       info.get("collected")]) + "\n")

    gc.callbacks.append(_watch)
