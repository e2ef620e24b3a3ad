"""`make bench`: performance figures, each measured against its baseline in the same run.

Benchmarks print figures (one JSON line each); they never pass or fail. See docs/PERFORMANCE.md.
"""
