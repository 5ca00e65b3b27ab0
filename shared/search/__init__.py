"""Hybrid search over the vector-store port, and the text rules it and the stores share."""
