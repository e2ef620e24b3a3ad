"""`make bench`: performance figures, each measured against its baseline in the same run.

Benchmarks print figures (one JSON line each); they never pass or fail. See docs/PERFORMANCE.md.
``python -m bench.local_pipeline_throughput`` (not in `make bench`: it starts the local runner for
~90 s) prints the end-to-end throughput of `make run` instead; see docs/LOCAL.md.
"""
