"""Pydantic v2 request and response models of the HTTP API."""
