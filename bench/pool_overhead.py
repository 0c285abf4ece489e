"""Per-task overhead of WorkerPool against ProcessPoolExecutor and a plain loop.

Run: ``PYTHONPATH=src python bench/pool_overhead.py [N_TASKS]`` (default 5,000 tasks, 2 workers).
Pools are started and warmed up before timing, so the figures are per-task cost only.
``abs`` travels by reference; ``local_task`` is defined in ``__main__``, so WorkerPool ships it by
value with cloudpickle on every submit (the cost of notebook/script stages without batching).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
import time
from collections.abc import Callable
from typing import Any

from stagewise.run.pool import WorkerPool, default_start_method


def local_task(x: int) -> int:
    return x


def per_task_us(executor: cf.Executor, fn: Callable[[int], Any], n: int) -> float:
    list(cf.as_completed([executor.submit(fn, i) for i in range(20)]))  # warm up
    start = time.perf_counter()
    futures = [executor.submit(fn, i) for i in range(n)]
    for future in cf.as_completed(futures):
        future.result()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    ctx = multiprocessing.get_context(default_start_method())
    print(f"{n} trivial tasks, 2 workers, start method {ctx.get_start_method()}, µs per task")
    start = time.perf_counter()
    for _ in range(n):
        abs(1)
    print(f"  plain loop                              {(time.perf_counter() - start) / n * 1e6:8.2f}")
    with WorkerPool(2) as pool:
        print(f"  WorkerPool submit+as_completed (abs)    {per_task_us(pool, abs, n):8.2f}")
        print(f"  WorkerPool, __main__ function by value  {per_task_us(pool, local_task, n):8.2f}")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ppe:
        print(f"  ProcessPoolExecutor submit+as_completed {per_task_us(ppe, abs, n):8.2f}")
        print(f"  ProcessPoolExecutor, __main__ function  {per_task_us(ppe, local_task, n):8.2f}")


if __name__ == "__main__":
    main()
