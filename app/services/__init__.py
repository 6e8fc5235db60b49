"""Use cases: take a Session and plain values, flush but never commit."""
