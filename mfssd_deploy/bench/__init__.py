"""Benchmark building blocks (the `mfssd-bench --fps` harness is assembled from these)."""
