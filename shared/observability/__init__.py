"""Logs, health checks and the percentile the metrics and benchmarks share."""
