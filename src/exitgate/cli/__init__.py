"""The exitgate command."""
