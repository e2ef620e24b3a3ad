"""`python -m bench [P1 P2 ...]`: print one JSON line per figure (all figures by default).

Figures, not pass/fail: each line carries its baseline, the goal and whether this run met it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench.common import emit, prepare_environment, quiet_stdout


def _figures() -> dict[str, Callable[[], list[dict[str, Any]]]]:
    from bench import aws_calls, cold_start, device_keys, ingest_overhead, lake_scan, stored_bytes, worker_parallelism

    return {
        "P1": lambda: [ingest_overhead.run()],
        "P2": cold_start.run,
        "P3": lambda: [worker_parallelism.run()],
        "P4": lambda: [aws_calls.run_sqs()],
        "P5": aws_calls.run_s3,
        "L1": aws_calls.run_log_bytes,
        "C1": worker_parallelism.run_cpu,
        "S1": stored_bytes.run,
        "D1": device_keys.run,
        "Q1": lake_scan.run,
    }


def main(argv: list[str]) -> int:
    prepare_environment()
    figures = _figures()
    chosen = [name.upper() for name in argv] or list(figures)
    unknown = [name for name in chosen if name not in figures]
    if unknown:
        print(f"unknown figure(s) {unknown}; choose from {list(figures)}", file=sys.stderr)
        return 2
    # Handlers log and write EMF metrics to stdout; only the figures reach the real stdout.
    with quiet_stdout() as out:
        for name in chosen:
            for result in figures[name]():
                emit(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
