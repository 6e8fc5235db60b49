"""Quarry: a label-efficient learning service."""

__version__ = "0.1.0"
