"""IndexStore: LRU eviction, single build under concurrency, invalidation."""

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from app.sampling.index_store import IndexStore
from app.sampling.vector_index import VectorIndex


def tiny_index(n: int = 4) -> VectorIndex:
    return VectorIndex.build(np.eye(n, dtype=np.float32))


class CountingBuilder:
    """A build callable that counts its calls (optionally slow)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self) -> VectorIndex:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return tiny_index()


def test_lru_evicts_least_recently_used() -> None:
    store = IndexStore(max_entries=2)
    builds = {key: CountingBuilder() for key in ("a", "b", "c")}
    first_a = store.get("a", builds["a"])
    store.get("b", builds["b"])
    assert store.get("a", builds["a"]) is first_a  # hit refreshes "a"
    store.get("c", builds["c"])  # evicts "b", the least recently used

    assert store.keys() == ["a", "c"]
    assert "b" not in store and len(store) == 2
    store.get("b", builds["b"])
    assert builds["a"].calls == 1 and builds["b"].calls == 2 and builds["c"].calls == 1
    assert store.keys() == ["c", "b"]


def test_build_runs_once_under_eight_concurrent_threads() -> None:
    store = IndexStore()
    build = CountingBuilder(delay=0.2)
    barrier = threading.Barrier(8)
    results: list[VectorIndex] = []
    results_lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        index = store.get((1, 7), build)
        with results_lock:
            results.append(index)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert build.calls == 1
    assert len(results) == 8 and all(index is results[0] for index in results)
    assert store._key_locks == {}  # per-key locks are released


def test_other_keys_are_not_blocked_by_a_slow_build() -> None:
    store = IndexStore()
    started = threading.Event()
    release = threading.Event()

    def slow() -> VectorIndex:
        started.set()
        release.wait(timeout=10)
        return tiny_index()

    thread = threading.Thread(target=store.get, args=("slow", slow))
    thread.start()
    assert started.wait(timeout=10)
    begin = time.perf_counter()
    store.get("fast", CountingBuilder())
    assert time.perf_counter() - begin < 1.0
    release.set()
    thread.join(timeout=10)
    assert set(store.keys()) == {"slow", "fast"}


def test_failed_build_is_not_cached_and_can_be_retried() -> None:
    store = IndexStore()

    def broken() -> VectorIndex:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        store.get("k", broken)
    assert "k" not in store
    build = CountingBuilder()
    store.get("k", build)
    assert build.calls == 1 and "k" in store


def test_invalidate_by_key_and_prefix() -> None:
    store = IndexStore(max_entries=8)
    for key in [(1, 10), (1, 11), (2, 10), "loose"]:
        store.get(key, CountingBuilder())

    assert store.invalidate((1, 10)) == 1
    assert store.invalidate(1) == 1  # first item of tuple keys: drops (1, 11)
    assert store.invalidate("loose") == 1
    assert store.invalidate((3,)) == 0
    assert store.keys() == [(2, 10)]
    store.clear()
    assert len(store) == 0


def test_invalidate_during_build_does_not_cache_the_stale_index() -> None:
    store = IndexStore()
    started = threading.Event()
    release = threading.Event()

    def slow() -> VectorIndex:
        started.set()
        release.wait(timeout=10)
        return tiny_index()

    got: list[VectorIndex] = []
    thread = threading.Thread(target=lambda: got.append(store.get((1, 1), slow)))
    thread.start()
    assert started.wait(timeout=10)
    store.invalidate(1)
    release.set()
    thread.join(timeout=10)
    assert len(got) == 1 and (1, 1) not in store


@pytest.mark.parametrize("bad", [0, -3])
def test_max_entries_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        IndexStore(max_entries=bad)


def test_get_returns_what_build_returns() -> None:
    store = IndexStore()
    index = tiny_index(3)
    build: Callable[[], VectorIndex] = lambda: index  # noqa: E731
    assert store.get("x", build) is index
