"""Benchmark building blocks, and the run assembled from them (run.run_bench: what `mfssd-bench` calls)."""
