"""Process-wide settings of job processes: torch threads and CPU priority."""

import os

import torch


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads in torch and in faiss (0 keeps their defaults).

    Small heads gain nothing from more threads, and on a shared 2-core machine an
    oversubscribed thread pool made one training 20x slower than a single thread; the index
    rebuild after a retrain (faiss k-means over the pool) took both cores from the API.
    """
    from app.sampling.vector_index import set_search_threads

    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    set_search_threads(n)


def lower_priority(increment: int) -> int:
    """Add ``increment`` (0..19) to this process's niceness (POSIX ``nice(2)``); the new value.

    Job processes lower their priority so that, on a host shared with the API, the scheduler
    gives request threads the CPU first and training takes the rest: the API's latency stays
    that of an idle host while a retrain runs. A no-op for 0 or where ``os.nice`` is missing.
    """
    if not hasattr(os, "nice"):
        return 0
    return os.nice(max(0, increment))
