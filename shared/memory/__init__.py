"""The memory service: mem0 behind the API contract, with erasure and owner checks."""
