"""Process-wide torch settings for jobs."""

import torch


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads (0 keeps torch's default).

    Small heads gain nothing from more threads, and on a shared 2-core machine an
    oversubscribed thread pool made one training 20x slower than a single thread.
    """
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
