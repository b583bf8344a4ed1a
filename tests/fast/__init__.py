"""Fast tier: the pool against a fake driver, no server."""
