"""Logs, traces, metrics and the percentile the metrics and benchmarks share (health checks: shared/health.py)."""
