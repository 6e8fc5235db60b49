"""Turn uploaded files (JSON, JSONL, CSV, Parquet, NPY) into validated import records.

Every bad row is collected (up to a cap) so one 422 names them all; nothing is stored.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.errors import InvalidInput, InvalidRows
from app.schemas.pools import ItemIn

MAX_REPORTED_ROWS = 50
FORMATS = ("json", "jsonl", "csv", "parquet", "npy")


@dataclass
class ColumnMap:
    """Which CSV/Parquet columns hold the id, text, label and image; the rest go to ``meta``."""

    id_column: str = "external_id"
    text_column: str = "text"
    label_column: str = "label"
    image_column: str = "image"
    ignore_labels: bool = False
    drop_columns: frozenset[str] = field(default_factory=frozenset)


class RowErrors:
    """Collects row errors and raises one InvalidRows at the end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.count = 0

    def add(self, row: int, field: str, msg: str) -> None:
        self.count += 1
        if len(self.rows) < MAX_REPORTED_ROWS:
            self.rows.append({"row": row, "field": field, "msg": msg})

    def raise_if_any(self) -> None:
        if self.count:
            raise InvalidRows(self.rows, total_bad=self.count)


def detect_format(filename: str | None, content_type: str | None) -> str:
    """Guess the format from the file name, then the content type.

    Raises:
        InvalidInput: unknown format.
    """
    name = (filename or "").lower()
    for fmt in FORMATS:
        if name.endswith("." + fmt):
            return fmt
    if name.endswith(".ndjson"):
        return "jsonl"
    ctype = (content_type or "").lower()
    if "ndjson" in ctype or "jsonl" in ctype:
        return "jsonl"
    if "json" in ctype:
        return "json"
    if "csv" in ctype:
        return "csv"
    raise InvalidInput(
        f"cannot tell the format of {filename!r}; use one of {', '.join(FORMATS)} "
        "(file extension or the 'format' field)",
        field="file",
    )


def parse_records(data: bytes, fmt: str, columns: ColumnMap) -> list[ItemIn]:
    """Parse and validate ``data`` in format ``fmt``.

    Raises:
        InvalidInput: the file as a whole cannot be read.
        InvalidRows: some rows are invalid (all reported rows listed, 1-based data rows).
    """
    if fmt == "json":
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"not valid JSON: {exc}", field="file") from None
        except RecursionError:
            raise InvalidInput("JSON nested too deeply", field="file") from None
        if not isinstance(raw, list):
            raise InvalidInput("a JSON import is an array of records", field="file")
        return validate_records(enumerate(raw, start=1))
    if fmt == "jsonl":
        return validate_records(_jsonl_rows(data))
    if fmt == "csv":
        return validate_records(_csv_rows(data, columns))
    if fmt == "parquet":
        return validate_records(_parquet_rows(data, columns))
    if fmt == "npy":
        return _npy_records(data)
    raise InvalidInput(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", field="format")


def validate_records(rows: Iterable[tuple[int, Any]]) -> list[ItemIn]:
    """Validate raw dict rows as ItemIn, collecting every error.

    Raises:
        InvalidRows: listing the bad rows.
    """
    errors = RowErrors()
    records: list[ItemIn] = []
    for number, raw in rows:
        if isinstance(raw, Exception):
            errors.add(number, "row", str(raw))
            continue
        if not isinstance(raw, dict):
            errors.add(number, "row", "a record is a JSON object")
            continue
        try:
            records.append(ItemIn.model_validate(raw))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(part) for part in err["loc"]) or "row"
                errors.add(number, loc, err["msg"])
    errors.raise_if_any()
    return records


def _jsonl_rows(data: bytes) -> Iterator[tuple[int, Any]]:
    text = _decode(data)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"invalid JSON: {exc.msg}")
        except RecursionError:
            yield number, ValueError("JSON nested too deeply")


def _csv_rows(data: bytes, columns: ColumnMap) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(_decode(data), newline=""))
    if not reader.fieldnames:
        raise InvalidInput("the CSV file has no header row", field="file")
    for number, row in enumerate(reader, start=1):
        if None in row:
            yield number, ValueError("row has more fields than the header")
            continue
        yield number, _map_columns({k: v for k, v in row.items() if v != ""}, columns)


def _parquet_rows(data: bytes, columns: ColumnMap) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise InvalidInput(f"not a readable Parquet file: {exc}", field="file") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, _map_columns({k: v for k, v in row.items() if v is not None}, columns)


def _map_columns(row: dict[str, Any], columns: ColumnMap) -> dict[str, Any]:
    record: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key == columns.id_column:
            record["external_id"] = str(value)
        elif key == columns.text_column:
            record["text"] = value
        elif key == columns.image_column:
            record["image"] = value
        elif key == columns.label_column:
            if not columns.ignore_labels:
                record["label"] = value
        elif key == "vector":
            record["vector"] = _json_or_raw(value)
        elif key not in columns.drop_columns:
            meta[key] = value
    if meta:
        record["meta"] = meta
    return record


def _json_or_raw(value: Any) -> Any:
    """A CSV cell holding a JSON array, parsed; anything unparsable stays as is (the row's
    validation then names the field)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return value


def _npy_records(data: bytes) -> list[ItemIn]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"not a readable .npy file: {exc}", field="file") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise InvalidInput("an .npy import is a numeric 2-d array [n, d]", field="file")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise InvalidRows(
            [{"row": int(r) + 1, "field": "vector", "msg": "NaN or infinite value"} for r in bad[:50]],
            total_bad=int(bad.size),
        )
    return [ItemIn(vector=row.tolist()) for row in array.astype(np.float64)]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8: {exc}", field="file") from None
