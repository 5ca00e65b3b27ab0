"""Hybrid search over the vector-store port (the query language it shares with the stores is `shared/query/`)."""
