"""Snapshot x proxy -> IR, one module per concern."""
