"""Adapters to the stores the service writes: vectors (`vector/`), state (`state/`), the ingestion queue."""
