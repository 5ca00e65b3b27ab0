"""Operations tools: what an operator runs against a store's data, with the service stopped.

python -m tools.ops.migrate_store    # bring a store written by an older version up to this one
python -m tools.ops.compact_store    # rewrite the embedded shard so deleted data leaves its files
"""
