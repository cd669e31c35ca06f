"""Stand-ins for external services, used by the demo and the tests."""
