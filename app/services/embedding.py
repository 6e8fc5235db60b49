"""One embedder instance per name per process (MiniLM is loaded once)."""

import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from app.ml.embedders import Embedder, make_embedder


class EmbedderCache:
    """Builds embedders on first use and keeps them; thread-safe."""

    def __init__(self, batch_size: int = 64) -> None:
        self._batch_size = batch_size
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Embedder:
        """The embedder called ``name`` (minilm, pixels, vector)."""
        with self._lock:
            if name not in self._embedders:
                kwargs = {"batch_size": self._batch_size} if name == "minilm" else {}
                self._embedders[name] = make_embedder(name, **kwargs)
            return self._embedders[name]

    def embed(
        self,
        name: str,
        records: Sequence[object],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed ``records`` with embedder ``name``: float32 ``[n, d]``."""
        return self.get(name).embed(records, on_progress=on_progress)  # type: ignore[arg-type]
