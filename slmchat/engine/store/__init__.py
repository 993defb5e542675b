"""Conversations in SQLite: the store, its schema migrations, transcripts."""
