"""Versioned agent packages: the app is in place, its models are not written yet."""
