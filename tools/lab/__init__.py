"""Experiments and probes: the measurements behind figures and constants quoted in docs/. They change
nothing of the service; the benchmarks the project tracks are in tools/bench."""
