"""The per-project artifact store on disk: pool features and checkpoint folders.

Layout under ``data_dir``::

    projects/<project_id>/pool/features.npy        float32 [pool_size, d], row = position
    projects/<project_id>/checkpoints/v<version>/  net.pt, meta.json, probs.npy, embeddings.npy
    projects/<project_id>/imports/<job_id>.jsonl   staged rows of an import job

Every write goes to a temporary file in the same folder, is fsynced, then ``os.replace``d, so a
reader sees the old or the new file, never a half-written one. The database holds ids and the
pool size; rows of ``features.npy`` beyond ``Project.pool_size`` (left by an import whose
transaction rolled back) are ignored and overwritten by the next import.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt


def atomic_write_npy(path: Path, array: npt.ArrayLike) -> None:
    """Write ``array`` to ``path`` (.npy) atomically: temp file, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(array))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Paths and array I/O for every project under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def project_dir(self, project_id: int) -> Path:
        """Folder holding everything of one project."""
        return self.root / "projects" / str(project_id)

    def features_path(self, project_id: int) -> Path:
        """Path of the pool's input features (embedder output)."""
        return self.project_dir(project_id) / "pool" / "features.npy"

    def checkpoint_dir(self, project_id: int, version: int) -> Path:
        """Folder of checkpoint ``version``."""
        return self.project_dir(project_id) / "checkpoints" / f"v{version}"

    def staging_path(self, project_id: int, name: str) -> Path:
        """File for rows staged by an import job."""
        return self.project_dir(project_id) / "imports" / name

    def read_features(self, project_id: int, pool_size: int) -> npt.NDArray[np.float32]:
        """Memory-mapped float32 ``[pool_size, d]`` features (read-only).

        Raises:
            FileNotFoundError: if the pool is non-empty but its features file is missing.
        """
        if pool_size == 0:
            return np.zeros((0, 0), dtype=np.float32)
        array = np.load(self.features_path(project_id), mmap_mode="r")
        if array.shape[0] < pool_size:
            raise FileNotFoundError(
                f"features of project {project_id} hold {array.shape[0]} rows, need {pool_size}"
            )
        return array[:pool_size]

    def append_features(
        self, project_id: int, pool_size: int, new_rows: npt.NDArray[np.float32]
    ) -> None:
        """Write rows ``pool_size .. pool_size + len(new_rows)`` of the features atomically.

        Args:
            project_id: the project.
            pool_size: rows already committed (older rows beyond it are discarded).
            new_rows: float32 ``[m, d]``.

        Raises:
            ValueError: if the dimension differs from the stored features.
        """
        new_rows = np.ascontiguousarray(new_rows, dtype=np.float32)
        if pool_size:
            old = self.read_features(project_id, pool_size)
            if old.shape[1] != new_rows.shape[1]:
                raise ValueError(f"dimension {new_rows.shape[1]} != pool's {old.shape[1]}")
            combined = np.concatenate([old, new_rows], axis=0)
        else:
            combined = new_rows
        atomic_write_npy(self.features_path(project_id), combined)

    def delete_project(self, project_id: int) -> None:
        """Remove a project's folder (after its rows were deleted and committed)."""
        shutil.rmtree(self.project_dir(project_id), ignore_errors=True)
