"""Checkpoint directories and ``.npy`` caches, written atomically.

A checkpoint directory holds ``net.pt`` (``state_dict`` + constructor kwargs, plain tensors and
builtins only, so it loads with ``torch.load(weights_only=True)``: no pickle code runs),
``meta.json`` and one ``<name>.npy`` per array (``probs``, ``embeddings``, ...). It is written
into a temporary sibling directory, fsynced, then renamed into place with ``os.replace``: a
reader sees the whole checkpoint or nothing.

torch is imported inside :func:`save_checkpoint` and :func:`load_net` only, so the request path
can use :func:`load_meta`, :func:`load_array` and :func:`atomic_save_npy` without loading torch.
"""

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

    from app.ml.networks import HeadNet

NET_FILE = "net.pt"
META_FILE = "meta.json"
FORMAT_VERSION = 1
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by path (directories: makes renames/creations durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path: Path, array: npt.ArrayLike) -> None:
    """np.save without pickles, flushed and fsynced."""
    with open(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _check_array_name(name: str) -> None:
    if not _ARRAY_NAME.match(name) or name.endswith(".npy"):
        raise ValueError(
            f"array name {name!r} must be 1-100 characters of letters, digits, '_', '-', '.' "
            "(not starting with '.' or '-', without the '.npy' suffix)"
        )


def atomic_save_npy(path: Path, array: npt.ArrayLike) -> Path:
    """Write ``array`` to ``path`` as ``.npy`` so readers see the old file or the new, never half.

    The data goes to a temporary file in the same directory, is fsynced, and replaces ``path``
    with ``os.replace`` (atomic on POSIX and Windows for same-filesystem paths); the directory is
    fsynced too. Object arrays are refused (``allow_pickle=False``).

    Args:
        path: destination file (an existing file is replaced); its directory is created.
        array: any array without Python objects.

    Returns:
        ``path``.

    Raises:
        ValueError: for object arrays (nothing is written).
        OSError: on filesystem errors (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write_npy(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)
    return path


def save_checkpoint(
    directory: Path,
    net: "HeadNet",
    *,
    meta: Mapping[str, Any],
    arrays: Mapping[str, npt.ArrayLike],
) -> Path:
    """Write a complete checkpoint directory atomically.

    Args:
        directory: the checkpoint directory to create (must not exist; parents are created).
        net: the trained head; its ``state_dict`` is saved on CPU with ``net.init_kwargs``.
        meta: JSON-serializable facts (label map, config, metrics...); NaN/inf are refused so
            the file stays strict JSON.
        arrays: name -> array, each saved as ``<name>.npy`` (e.g. ``probs`` float32 ``[n, c]``,
            ``embeddings`` float32 ``[n, h]``, ``item_ids`` int64 ``[n]``). Names are 1-100
            characters of ``[A-Za-z0-9_.-]``.

    Name checkpoint directories uniquely (e.g. by checkpoint id): ``os.replace`` would also
    replace an *empty* directory created by someone else during the write, so the existence
    check is repeated right before the rename but cannot be airtight.

    Returns:
        ``directory``.

    Raises:
        FileExistsError: if ``directory`` already exists (nothing is written).
        ValueError: for a bad array name, an object array or non-JSON ``meta``; like any other
            failure it leaves no ``directory`` and no temporary directory behind.
    """
    import torch

    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"checkpoint directory {directory} already exists")
    for name in arrays:
        _check_array_name(name)
    meta_text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        payload = {
            "format": FORMAT_VERSION,
            "class": type(net).__name__,
            "kwargs": dict(net.init_kwargs),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        }
        with open(tmp / NET_FILE, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            f.write(meta_text)
            f.flush()
            os.fsync(f.fileno())
        for name, array in arrays.items():
            _write_npy(tmp / f"{name}.npy", array)
        _fsync_path(tmp)
        if directory.exists():  # created while we were writing
            raise FileExistsError(f"checkpoint directory {directory} already exists")
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(directory.parent)
    return directory


def load_net(directory: Path, device: "str | torch.device" = "cpu") -> "HeadNet":
    """Rebuild the net of a checkpoint, in eval mode, on ``device``.

    Args:
        directory: a directory written by :func:`save_checkpoint`.
        device: ``"auto"``/``"cpu"``/``"cuda"`` or a ``torch.device``.

    Returns:
        The net (:class:`MLPHeadNet` or :class:`SmallCNNNet`, by the saved class name) with
        its weights and standardization buffers.

    Raises:
        FileNotFoundError: if ``net.pt`` is missing.
        ValueError: if the file is not a checkpoint of a known format or class.
    """
    import torch

    from app.ml.networks import NETS
    from app.ml.predict import resolve_device

    dev = resolve_device(device)
    payload = torch.load(Path(directory) / NET_FILE, map_location=dev, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{directory}/{NET_FILE} is not a format-{FORMAT_VERSION} checkpoint")
    net_class = NETS.get(str(payload.get("class")))
    if net_class is None:
        raise ValueError(f"unknown network class {payload.get('class')!r} in {directory}")
    net = net_class(**payload["kwargs"])
    net.load_state_dict(payload["state_dict"])
    return net.to(dev).eval()


def load_meta(directory: Path) -> dict[str, Any]:
    """Read ``meta.json`` of a checkpoint.

    Raises:
        FileNotFoundError: if it is missing.
    """
    with open(Path(directory) / META_FILE, encoding="utf-8") as f:
        meta: dict[str, Any] = json.load(f)
    return meta


def load_array(directory: Path, name: str, mmap: bool = True) -> npt.NDArray[Any]:
    """Open ``<name>.npy`` of a checkpoint, memory-mapped read-only by default.

    Args:
        directory: checkpoint directory.
        name: array name as given to :func:`save_checkpoint`.
        mmap: ``np.load(mmap_mode="r")`` when true (pages load on access; the OS page cache is
            shared between processes), else read into memory.

    Raises:
        ValueError: for an invalid name.
        FileNotFoundError: if the array does not exist.
    """
    _check_array_name(name)
    array: npt.NDArray[Any] = np.load(
        Path(directory) / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False
    )
    return array
