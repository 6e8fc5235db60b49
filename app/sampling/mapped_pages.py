"""Release the resident pages of a read-only memory map after streaming through it.

Reading rows of a ``np.load(path, mmap_mode="r")`` array faults the file's pages into this
process's resident set (they count in RSS and ``ru_maxrss`` until the kernel needs the memory).
Code that reads a memory-mapped corpus or anchor set once, chunk by chunk, calls
:func:`release_rows` after each chunk so that the process holds one chunk of it at a time; the
pages stay in the OS page cache, and a later read faults them back in (the data never changes).

Only maps opened read-only (``np.memmap`` mode ``"r"``) are touched: ``madvise(MADV_DONTNEED)``
on a copy-on-write map (``"c"``) would discard the caller's changes. Anything else (plain
arrays, writable maps, platforms without ``madvise``) is a no-op.

Source: madvise(2), ``MADV_DONTNEED`` ("subsequent accesses of pages in the range ... will
result in repopulating the memory contents from the up-to-date contents of the underlying
mapped file").
"""

import mmap

import numpy as np
import numpy.typing as npt

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def _read_only_map(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap.mmap`` under ``array`` when it belongs to a read-only ``np.memmap``."""
    owner: object = array
    read_only = False
    while owner is not None:
        if isinstance(owner, np.memmap) and getattr(owner, "mode", None) == "r":
            read_only = True
        if isinstance(owner, mmap.mmap):
            return owner if read_only else None
        owner = getattr(owner, "base", None)
    return None


def release_rows(array: npt.ArrayLike, rows: npt.ArrayLike | slice) -> None:
    """Drop this process's resident pages that hold ``array[rows]`` (a no-op unless ``array``
    is a read-only memory map).

    Args:
        array: ``[n, ...]`` array, typically a view of ``np.load(..., mmap_mode="r")``.
        rows: a ``slice`` (step 1) or int row indices; the pages spanning the smallest to the
            largest row are released (rows in between are simply faulted in again if read).
    """
    if _DONTNEED is None or not isinstance(array, np.ndarray) or array.ndim == 0:
        return
    mapped = _read_only_map(array)
    if mapped is None or array.shape[0] == 0 or array.strides[0] <= 0:
        return
    if isinstance(rows, slice):
        start, stop, _ = rows.indices(array.shape[0])
    else:
        picked = np.asarray(rows)
        if picked.size == 0:
            return
        start, stop = int(picked.min()), int(picked.max()) + 1
    if stop <= start:
        return
    base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    first = array.__array_interface__["data"][0] + start * array.strides[0] - base
    last = first + (stop - start) * array.strides[0]
    page = mmap.PAGESIZE
    low = max(0, (first // page) * page)
    high = min(len(mapped), -(-last // page) * page)
    if high > low:
        try:
            mapped.madvise(_DONTNEED, low, high - low)
        except (OSError, ValueError):  # advice only: never fail the caller's read
            return


GATHER_PIECES = 32
""":func:`gather_rows` reads sorted rows in at least this many pieces (each spans about
1/32 of the rows read), releasing each piece's pages before the next."""


def gather_rows(array: npt.ArrayLike, rows: npt.ArrayLike, *, piece_rows: int = 4096) -> np.ndarray:
    """``array[rows]`` as a new array, read without leaving a memory map resident.

    Scattered reads of a memory map fault in far more than the rows read (fault-around and
    large page-cache folios map whole neighbourhoods), so ``array[random_rows]`` on a map can
    make most of the file resident. Here the rows are read in ascending order, in pieces of at
    most ``piece_rows`` rows and at least :data:`GATHER_PIECES` pieces, and each piece's pages
    are released (:func:`release_rows`) before the next, so at most about one piece's span of
    the file is resident at a time. For arrays that are not read-only maps this is
    ``np.asarray(array)[rows]``.

    Args:
        array: ``[n, ...]`` array or read-only memory map.
        rows: int ``[m]`` row indices (any order, duplicates allowed).
        piece_rows: rows per piece, ``>= 1``.

    Returns:
        ``[m, ...]`` array of ``array``'s dtype, row ``i`` = ``array[rows[i]]``.

    Raises:
        IndexError: for a row outside ``[-n, n)``.
    """
    source = np.asarray(array)
    picked = np.asarray(rows, dtype=np.int64)
    if _read_only_map(source) is None or picked.size == 0:
        return source[picked]
    picked = np.where(picked < 0, picked + source.shape[0], picked)
    order = np.argsort(picked, kind="stable")
    out = np.empty((picked.size, *source.shape[1:]), dtype=source.dtype)
    pieces = max(GATHER_PIECES, -(-picked.size // max(1, piece_rows)))
    for part in np.array_split(order, min(pieces, picked.size)):
        out[part] = source[picked[part]]
        release_rows(source, picked[part])
    return out
