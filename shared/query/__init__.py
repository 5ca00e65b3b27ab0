"""The query language the stores and the search share: the filter grammar (`filters.py`) and the text
analysis (`text.py`). Below the stores: it imports nothing of the service."""
