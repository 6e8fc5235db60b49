"""Hostile and bad input: every case is a 4xx problem+json naming the field, nothing stored.

One parametrized case per hostile input per entry point (JSON / CSV / JSONL / Parquet / NPY
imports, annotations, batch queries, /next, mining, search, exports, path ids). Each asserts the
status, ``application/problem+json``, that ``errors[].loc`` names the field, and that the row
counts of projects, items, annotations, leases, jobs and query batches and the files under the
artifact store are unchanged. SQL-looking strings are data: stored verbatim and read back.
"""

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from app.models import Annotation, Item, Job, Lease, Project, QueryBatch
from app.schemas.ids import MAX_DB_ID
from tests.factories import API, make_pool, make_project

SQL = "'; DROP TABLE items; --"
TRAVERSAL = "../../etc/passwd"


def _state(session, store_root: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    session.expire_all()
    counts = {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (Project, Item, Annotation, Lease, Job, QueryBatch)
    }
    files = sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*") if p.is_file())
    return {**counts, "files": files}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _parquet(table: dict[str, list[Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(table), buffer)
    return buffer.getvalue()


def _items(pid: int, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    return "POST", f"{API}/projects/{pid}/items", kw


def _upload(pid: int, name: str, raw: bytes, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    return "POST", f"{API}/projects/{pid}/items", {"files": {"file": (name, raw)}, **kw}


# (case id, request builder (pid, item_id) -> (method, url, httpx kwargs), status, loc part)
Case = tuple[str, Callable[[int, int], tuple[str, str, dict[str, Any]]], int, str]
CASES: list[Case] = [
    # JSON body import
    (
        "json-nan",
        lambda p, i: _items(
            p, content=b'[{"vector": [1, NaN, 2]}]', headers={"content-type": "application/json"}
        ),
        422,
        "vector",
    ),
    (
        "json-inf",
        lambda p, i: _items(
            p,
            content=b'[{"vector": [1, Infinity, 2]}]',
            headers={"content-type": "application/json"},
        ),
        422,
        "vector",
    ),
    ("json-wrong-dim", lambda p, i: _items(p, json=[{"vector": [1, 2, 3, 4]}]), 422, "vector"),
    ("json-empty-vector", lambda p, i: _items(p, json=[{"vector": []}]), 422, "vector"),
    (
        "json-unknown-label",
        lambda p, i: _items(p, json=[{"vector": [1, 2, 3], "label": "zebra"}]),
        422,
        "label",
    ),
    (
        "json-sql-label",
        lambda p, i: _items(p, json=[{"vector": [1, 2, 3], "label": SQL}]),
        422,
        "label",
    ),
    (
        "json-duplicate-ids",
        lambda p, i: _items(
            p,
            json=[
                {"external_id": "d", "vector": [1, 2, 3]},
                {"external_id": "d", "vector": [3, 2, 1]},
            ],
        ),
        422,
        "external_id",
    ),
    (
        "json-existing-id",
        lambda p, i: _items(p, json=[{"external_id": "x0", "vector": [1, 2, 3]}]),
        422,
        "external_id",
    ),
    (
        "json-malformed",
        lambda p, i: _items(
            p, content=b'[{"vector": [1, 2', headers={"content-type": "application/json"}
        ),
        422,
        "body",
    ),
    ("json-not-array", lambda p, i: _items(p, json={"vector": [1, 2, 3]}), 422, "body"),
    ("json-empty-array", lambda p, i: _items(p, json=[]), 422, "items"),
    (
        "json-deep-nesting",
        lambda p, i: _items(
            p, content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}
        ),
        422,
        "body",
    ),
    (
        "json-nul-external-id",
        lambda p, i: _items(p, json=[{"external_id": "a\x00b", "vector": [1, 2, 3]}]),
        422,
        "external_id",
    ),
    (
        "json-nan-in-meta",
        lambda p, i: _items(
            p,
            content=b'[{"vector": [1, 2, 3], "meta": {"x": NaN}}]',
            headers={"content-type": "application/json"},
        ),
        422,
        "meta",
    ),
    (
        "json-unknown-field",
        lambda p, i: _items(p, json=[{"vector": [1, 2, 3], "path": TRAVERSAL}]),
        422,
        "path",
    ),
    (
        "json-text-in-vector-project",
        lambda p, i: _items(p, json=[{"text": "no vector"}]),
        422,
        "vector",
    ),
    # CSV
    (
        "csv-extra-field",
        lambda p, i: _upload(p, "x.csv", b'vector\n"[1,2,3]",surplus\n'),
        422,
        "row",
    ),
    ("csv-bad-vector-cell", lambda p, i: _upload(p, "x.csv", b"vector\nnot-json\n"), 422, "vector"),
    ("csv-nan-vector", lambda p, i: _upload(p, "x.csv", b'vector\n"[1, NaN, 3]"\n'), 422, "vector"),
    ("csv-not-utf8", lambda p, i: _upload(p, "x.csv", b"vector\n\xff\xfe\n"), 422, "file"),
    ("csv-no-header", lambda p, i: _upload(p, "x.csv", b""), 422, "file"),
    (
        "csv-content-type-body",
        lambda p, i: _items(p, content=b'vector\n"[1,2]"\n', headers={"content-type": "text/csv"}),
        422,
        "vector",
    ),
    # JSONL
    (
        "jsonl-malformed-line",
        lambda p, i: _upload(p, "x.jsonl", b'{"vector": [1, 0, 0]}\n{"vec\n'),
        422,
        "row",
    ),
    ("jsonl-not-object", lambda p, i: _upload(p, "x.jsonl", b"[1, 2, 3]\n"), 422, "row"),
    (
        "jsonl-unknown-label",
        lambda p, i: _upload(p, "x.jsonl", b'{"vector": [1, 0, 0], "label": "zebra"}\n'),
        422,
        "label",
    ),
    # Parquet
    ("parquet-corrupt", lambda p, i: _upload(p, "x.parquet", b"PAR1 not really"), 422, "file"),
    (
        "parquet-wrong-dim",
        lambda p, i: _upload(p, "x.parquet", _parquet({"vector": [[1.0, 2.0]]})),
        422,
        "vector",
    ),
    (
        "parquet-inf",
        lambda p, i: _upload(p, "x.parquet", _parquet({"vector": [[1.0, float("inf"), 2.0]]})),
        422,
        "vector",
    ),
    # NPY vectors
    (
        "npy-wrong-dim",
        lambda p, i: _upload(p, "v.npy", _npy(np.ones((2, 4), np.float32))),
        422,
        "vector",
    ),
    (
        "npy-nan",
        lambda p, i: _upload(p, "v.npy", _npy(np.array([[1, np.nan, 2]], np.float32))),
        422,
        "vector",
    ),
    ("npy-1d", lambda p, i: _upload(p, "v.npy", _npy(np.ones(3, np.float32))), 422, "file"),
    ("npy-garbage", lambda p, i: _upload(p, "v.npy", b"\x93NUMPY garbage"), 422, "file"),
    (
        "npy-pickled-objects",
        lambda p, i: _upload(p, "v.npy", _npy(np.array([[{}]], dtype=object))),
        422,
        "file",
    ),
    # multipart fields and file names
    (
        "upload-traversal-name",
        lambda p, i: _upload(p, TRAVERSAL, b'{"vector": [1, 2, 3]}\n'),
        422,
        "file",
    ),
    (
        "upload-unknown-format",
        lambda p, i: _upload(p, "x.jsonl", b"{}", data={"format": "exe"}),
        422,
        "format",
    ),
    (
        "upload-no-file-field",
        lambda p, i: _items(p, files={"other": ("x.csv", b"vector\n")}),
        422,
        "file",
    ),
    # annotations
    (
        "annotation-unknown-label",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": i, "label": "zebra"}},
        ),
        422,
        "label",
    ),
    (
        "annotation-sql-label",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": i, "label": SQL}},
        ),
        422,
        "label",
    ),
    (
        "annotation-huge-item-id",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": 2**63, "label": "a"}},
        ),
        422,
        "item_id",
    ),
    (
        "annotation-negative-item-id",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": -1, "label": "a"}},
        ),
        422,
        "item_id",
    ),
    (
        "annotation-nul-annotator",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": i, "label": "a", "annotator": "x\x00"}},
        ),
        422,
        "annotator",
    ),
    (
        "annotation-both-label-forms",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/annotations",
            {"json": {"item_id": i, "label": "a", "labels": ["a"]}},
        ),
        422,
        "body",
    ),
    # batch queries, /next, mining, search, verify queues
    (
        "query-batch-zero",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/queries",
            {"json": {"strategy": "margin", "batch_size": 0}},
        ),
        422,
        "batch_size",
    ),
    (
        "query-batch-huge",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/queries",
            {"json": {"strategy": "random", "batch_size": 10**9}},
        ),
        422,
        "batch_size",
    ),
    (
        "query-unknown-strategy",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/queries",
            {"json": {"strategy": SQL, "batch_size": 1}},
        ),
        422,
        "strategy",
    ),
    (
        "query-nan-param",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/queries",
            {
                "content": b'{"strategy": "random", "params": {"x": NaN}}',
                "headers": {"content-type": "application/json"},
            },
        ),
        422,
        "params",
    ),
    (
        "next-n-zero",
        lambda p, i: ("GET", f"{API}/projects/{p}/next", {"params": {"n": 0}}),
        422,
        "n",
    ),
    (
        "next-n-negative",
        lambda p, i: ("GET", f"{API}/projects/{p}/next", {"params": {"n": -5}}),
        422,
        "n",
    ),
    (
        "next-n-absurd",
        lambda p, i: ("GET", f"{API}/projects/{p}/next", {"params": {"n": 10**12}}),
        422,
        "n",
    ),
    (
        "next-nul-annotator",
        lambda p, i: ("GET", f"{API}/projects/{p}/next", {"params": {"annotator": "a\x00"}}),
        422,
        "annotator",
    ),
    (
        "mine-k-negative",
        lambda p, i: ("POST", f"{API}/projects/{p}/negatives/mine", {"json": {"k": -1}}),
        422,
        "k",
    ),
    (
        "mine-k-zero",
        lambda p, i: ("POST", f"{API}/projects/{p}/negatives/mine", {"json": {"k": 0}}),
        422,
        "k",
    ),
    (
        "mine-k-absurd",
        lambda p, i: ("POST", f"{API}/projects/{p}/negatives/mine", {"json": {"k": 10**9}}),
        422,
        "k",
    ),
    (
        "search-k-absurd",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/search",
            {"json": {"vector": [1, 2, 3], "k": 10**6}},
        ),
        422,
        "k",
    ),
    (
        "search-k-negative",
        lambda p, i: (
            "POST",
            f"{API}/projects/{p}/search",
            {"json": {"vector": [1, 2, 3], "k": -3}},
        ),
        422,
        "k",
    ),
    (
        "verify-n-absurd",
        lambda p, i: (
            "GET",
            f"{API}/projects/{p}/negatives/verify/next",
            {"params": {"annotator": "v", "n": 10**6}},
        ),
        422,
        "n",
    ),
    (
        "pseudo-n-absurd",
        lambda p, i: (
            "GET",
            f"{API}/projects/{p}/pseudo-labels/verify/next",
            {"params": {"annotator": "v", "n": 10**6}},
        ),
        422,
        "n",
    ),
    (
        "items-limit-absurd",
        lambda p, i: ("GET", f"{API}/projects/{p}/items", {"params": {"limit": 10**9}}),
        422,
        "limit",
    ),
    # exports and path ids
    (
        "export-format-traversal",
        lambda p, i: ("GET", f"{API}/projects/{p}/export", {"params": {"format": TRAVERSAL}}),
        422,
        "format",
    ),
    (
        "export-include-sql",
        lambda p, i: ("GET", f"{API}/projects/{p}/export", {"params": {"include": SQL}}),
        422,
        "include",
    ),
    (
        "negatives-export-run-id",
        lambda p, i: ("GET", f"{API}/projects/{p}/negatives/export", {"params": {"run_id": -1}}),
        422,
        "run_id",
    ),
    ("project-id-overflow", lambda p, i: ("GET", f"{API}/projects/{2**63}", {}), 422, "project_id"),
    (
        "item-id-overflow",
        lambda p, i: ("GET", f"{API}/projects/{p}/items/{MAX_DB_ID + 1}", {}),
        422,
        "item_id",
    ),
    ("job-id-negative", lambda p, i: ("GET", f"{API}/jobs/-1", {}), 422, "job_id"),
    (
        "model-version-overflow",
        lambda p, i: ("POST", f"{API}/projects/{p}/models/{2**40}/activate", {}),
        422,
        "version",
    ),
    (
        "project-nul-name",
        lambda p, i: (
            "POST",
            f"{API}/projects",
            {
                "json": {
                    "name": "a\x00",
                    "task": "multiclass",
                    "labels": ["a"],
                    "modality": "vector",
                }
            },
        ),
        422,
        "name",
    ),
]


@pytest.fixture
def pool(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A 3-d vector project (labels a, b, c) with six items, ids ``x0``..``x5``."""
    project = make_project(client, name="hostile")
    vectors = np.eye(3, dtype=np.float32)
    rows = [
        {"external_id": f"x{i}", "vector": (vectors[i % 3] * (1 + i)).tolist()} for i in range(6)
    ]
    assert client.post(f"{API}/projects/{project['id']}/items", json=rows).status_code == 201
    items = client.get(f"{API}/projects/{project['id']}/items").json()["items"]
    return {**project, "item_id": items[0]["id"]}


@pytest.mark.parametrize(
    ("build", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input_is_refused_and_nothing_is_stored(
    client,
    services,
    session,
    pool,
    build,
    status,
    field,  # type: ignore[no-untyped-def]
) -> None:
    before = _state(session, services.store.root)
    method, url, kwargs = build(pool["id"], pool["item_id"])
    response = client.request(method, url, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["code"]
    locs = [[str(part) for part in error["loc"]] for error in body.get("errors", [])]
    assert any(field in loc for loc in locs), (field, locs)
    assert _state(session, services.store.root) == before


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda c, url, rows: c.post(url, json=rows), id="json-content-length"),
        pytest.param(
            lambda c, url, rows: c.post(
                url,
                content=(json.dumps(rows)[i : i + 64].encode() for i in range(0, 10_000, 64)),
                headers={"content-type": "application/json"},
            ),
            id="json-chunked-no-length",
        ),
        pytest.param(
            lambda c, url, rows: c.post(
                url, files={"file": ("big.jsonl", "\n".join(json.dumps(r) for r in rows).encode())}
            ),
            id="multipart-file",
        ),
        pytest.param(
            lambda c, url, rows: c.post(
                url,
                content=b"x" * 500,
                headers={"content-type": "text/csv", "content-length": "10"},
            ),
            id="lying-content-length",
        ),
    ],
)
def test_oversized_upload_is_413_with_the_limit(client, services, session, pool, send) -> None:  # type: ignore[no-untyped-def]
    services.settings.max_upload_bytes = 200
    before = _state(session, services.store.root)
    rows = [{"vector": [1.0, 2.0, 3.0], "meta": {"pad": "p" * 20}} for _ in range(50)]
    response = send(client, f"{API}/projects/{pool['id']}/items", rows)
    if response.status_code == 400:  # h11 refuses a body longer than its Content-Length
        pytest.skip("the transport refused the lying Content-Length itself")
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "payload_too_large" and body["context"]["limit"] == 200
    assert body["errors"][0]["loc"] == ["body"]
    assert _state(session, services.store.root) == before


def test_upload_under_the_limit_still_imports(client, services, pool) -> None:  # type: ignore[no-untyped-def]
    services.settings.max_upload_bytes = 200
    response = client.post(
        f"{API}/projects/{pool['id']}/items",
        content=(b'[{"vector": [1, 1, 1]}', b"]"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


def test_sql_looking_strings_are_stored_verbatim(client, session) -> None:  # type: ignore[no-untyped-def]
    """SQL-looking text, ids, annotators, meta and a declared label are data, never executed."""
    project = make_project(client, name=SQL, labels=[SQL, "b"], task="multiclass")
    pid = project["id"]
    rows = [
        {"external_id": SQL, "vector": [1, 0, 0], "text": SQL, "meta": {SQL: SQL}},
        {"external_id": "1 OR 1=1", "vector": [0, 1, 0], "label": SQL},
    ]
    response = client.post(f"{API}/projects/{pid}/items", json=rows)
    assert response.status_code == 201, response.text
    items = client.get(f"{API}/projects/{pid}/items").json()["items"]
    assert items[0]["external_id"] == SQL and items[0]["text"] == SQL
    assert items[0]["meta"] == {SQL: SQL}
    assert items[1]["labels"] == [SQL]
    posted = client.post(
        f"{API}/projects/{pid}/annotations",
        json={"item_id": items[0]["id"], "label": SQL, "annotator": SQL},
    )
    assert posted.status_code == 201, posted.text
    detail = client.get(f"{API}/projects/{pid}/items/{items[0]['id']}").json()
    assert detail["labels"] == [SQL] and detail["annotations"][-1]["annotator"] == SQL
    filtered = client.get(f"{API}/projects/{pid}/items", params={"label": SQL}).json()["items"]
    assert {i["id"] for i in filtered} == {items[0]["id"], items[1]["id"]}
    assert client.get(f"{API}/projects/{pid}").json()["name"] == SQL
    assert session.scalar(select(func.count()).select_from(Item)) >= 2  # the table is still there


def test_traversal_in_a_file_name_only_picks_the_format(client, services, tmp_path, pool) -> None:  # type: ignore[no-untyped-def]
    """A multipart file name is used for its extension alone: nothing is written by that name."""
    name = "../../../../evil.jsonl"
    response = client.post(
        f"{API}/projects/{pool['id']}/items",
        files={"file": (name, b'{"vector": [2, 2, 2]}\n')},
    )
    assert response.status_code == 201, response.text
    for root in (tmp_path, services.store.root, Path.cwd()):
        assert not list(root.rglob("evil.jsonl"))


def test_static_files_refuse_traversal(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/static/../../pyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "dependencies" not in response.text


def test_make_pool_helper_unaffected(client) -> None:  # type: ignore[no-untyped-def]
    """The bounds leave ordinary pools alone (a sanity check of the fixture path)."""
    project = make_project(client, name="ok")
    make_pool(client, project, n=10, labeled=2)
    assert client.get(f"{API}/projects/{project['id']}").json()["counts"]["items"] == 10
