"""Adapters to the stores the service writes: vectors (`vector/`)."""
