"""A thread-safe LRU of :class:`VectorIndex` objects, built at most once per key.

Requests read the active checkpoint's index through this cache (DESIGN convention 10): the first
request for a key runs ``build`` (typically "load ``index.faiss``, else rebuild it from
``embeddings.npy``"); concurrent requests for the same key wait for that one build instead of
starting their own, and requests for other keys are not blocked meanwhile.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from app.sampling.vector_index import VectorIndex


@dataclass
class _KeyLock:
    """A per-key build lock plus how many threads currently hold or wait on it."""

    lock: threading.Lock
    users: int = 0


class IndexStore:
    """Least-recently-used cache of vector indexes keyed by any hashable key.

    Keys are usually tuples such as ``(project_id, checkpoint_id)``; :meth:`invalidate` can drop
    every key that starts with a prefix (``invalidate(project_id)`` or
    ``invalidate((project_id,))``). Loading from disk is the caller's job, inside ``build``.
    """

    def __init__(self, max_entries: int = 8) -> None:
        """Create an empty store holding at most ``max_entries`` indexes.

        Raises:
            ValueError: if ``max_entries < 1``.
        """
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, VectorIndex] = OrderedDict()
        self._key_locks: dict[Hashable, _KeyLock] = {}
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by invalidate()/clear(): builds started before are not cached

    @property
    def max_entries(self) -> int:
        """Capacity of the cache."""
        return self._max_entries

    def __len__(self) -> int:
        """Number of cached indexes."""
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is cached now (does not refresh its recency)."""
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: Hashable, build: Callable[[], VectorIndex]) -> VectorIndex:
        """Return the cached index for ``key``, calling ``build()`` once if it is missing.

        Concurrent callers with the same key share one ``build()`` call; callers with other keys
        are not blocked by it. When ``build`` raises, nothing is cached, the error propagates to
        this caller, and a waiting caller tries its own ``build``.

        Args:
            key: hashable cache key, e.g. ``(project_id, checkpoint_id)``.
            build: zero-argument factory that loads or builds the index.

        Returns:
            The cached or freshly built VectorIndex (now the most recently used).
        """
        with self._lock:
            cached = self._hit(key)
            if cached is not None:
                return cached
            key_lock = self._key_locks.get(key)
            if key_lock is None:
                key_lock = self._key_locks[key] = _KeyLock(threading.Lock())
            key_lock.users += 1
        try:
            with key_lock.lock:
                with self._lock:
                    cached = self._hit(key)
                    epoch = self._epoch
                if cached is not None:
                    return cached
                index = build()
                with self._lock:
                    if self._epoch == epoch:
                        self._entries[key] = index
                        self._entries.move_to_end(key)
                        while len(self._entries) > self._max_entries:
                            self._entries.popitem(last=False)
                return index
        finally:
            with self._lock:
                key_lock.users -= 1
                if key_lock.users == 0 and self._key_locks.get(key) is key_lock:
                    del self._key_locks[key]

    def invalidate(self, prefix_or_key: Hashable) -> int:
        """Drop ``prefix_or_key`` itself and every tuple key that starts with it.

        A tuple prefix matches keys whose leading items equal it; any other value matches tuple
        keys whose first item equals it. A build in progress when this is called still returns
        its index to its callers but does not cache it.

        Args:
            prefix_or_key: a full key, a tuple prefix, or a first key item (e.g. a project id).

        Returns:
            How many cached indexes were dropped.
        """
        prefix = prefix_or_key if isinstance(prefix_or_key, tuple) else (prefix_or_key,)
        with self._lock:
            self._epoch += 1
            doomed = [
                key
                for key in self._entries
                if key == prefix_or_key
                or (isinstance(key, tuple) and key[: len(prefix)] == prefix and len(prefix) > 0)
            ]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def clear(self) -> None:
        """Drop every cached index (builds in progress are not cached either)."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()

    def _hit(self, key: Hashable) -> VectorIndex | None:
        """Return the cached index and mark it most recently used (caller holds the lock)."""
        index = self._entries.get(key)
        if index is not None:
            self._entries.move_to_end(key)
        return index
