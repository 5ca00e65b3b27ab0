"""The chat agent: one turn = recall, answer, learn."""
