"""Chat with local files: read, chunk, index (SQLite FTS5, BM25) and retrieve passages."""
