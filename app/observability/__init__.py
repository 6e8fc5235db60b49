"""Operations: Prometheus metrics, JSON logs, the worker heartbeat that /readyz reads."""
