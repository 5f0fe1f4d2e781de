"""Persistence: the schema, its migrations and database sessions."""
