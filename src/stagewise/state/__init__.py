"""Persistence: the SQLite state store, file digests with their stat cache, and the run lock."""
