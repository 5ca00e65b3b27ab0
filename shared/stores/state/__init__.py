"""State beside the vectors: chat sessions and memory history, on local files or Azure tables."""
