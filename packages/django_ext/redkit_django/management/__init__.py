"""redkit's management commands."""
