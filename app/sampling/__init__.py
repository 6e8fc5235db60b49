"""Which rows (and pairs) to use for training: numpy (+ faiss) only, indexed by position.

Nothing here imports sqlalchemy, fastapi, torch or ``app.models``.
"""
