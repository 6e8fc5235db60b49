"""Smoke test of bench/load.py: 3 annotators for 3 s against a live server on SQLite (thread
runner, digits), with a retrain started after 1 s; every acknowledged label stored once."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import load  # noqa: E402


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "WORK", tmp_path)
    return tmp_path


def test_load_runs_and_every_acknowledged_label_is_stored_once(work):
    out = work / "load.csv"
    (row,) = load.main(
        [
            "--database-url",
            "sqlite",
            "--runner",
            "thread",
            "--dataset",
            "digits",
            "--annotators",
            "3",
            "--seconds",
            "3",
            "--retrain-at",
            "1",
            "--no-baseline",
            "--work",
            str(work),
            "--out",
            str(out),
        ]
    )
    assert row["run"] == "retrain" and row["retrains"] >= 1
    statuses = row["retrain_statuses"].split(",")
    assert set(statuses) <= {"queued", "running", "succeeded", "cancelled"}
    assert row["in_retrain_pairs"] <= len([r for r in load_requests(work) if r["kind"] == "label"])
    assert row["acked"] > 0 and row["errors"] == 0
    assert row["stored"] == row["acked"] and row["lost"] == 0 and row["duplicated"] == 0
    assert row["double_served"] == 0
    assert row["next_p50_ms"] > 0 and row["pair_p99_ms"] >= row["pair_p50_ms"]
    assert out.exists() and (work / "load_requests.csv").exists()

    # the check does catch a lost label: an acknowledged id the database does not hold
    url = f"sqlite+pysqlite:///{work / 'retrain' / 'run.db'}"
    bogus = [["label", 0.0, 1.0, 201, "load-0", 1, 10**9, "k", ""]]
    assert load.exactly_once(url, 1, bogus)["lost"] == 1


def load_requests(work):
    import csv

    with open(work / "load_requests.csv") as f:
        return list(csv.DictReader(f))


def test_pairs_add_each_successful_next_to_its_label():
    log = [
        ["next", 0, 10.0, 200, "a", 1, None, None, ""],
        ["next", 0, 5.0, 200, "b", 2, None, None, ""],
        ["label", 0, 20.0, 201, "a", 1, 7, "k", ""],
        ["next", 0, 99.0, 503, "a", None, None, None, "x"],
        ["label", 0, 1.0, 201, "b", 2, 8, "k", ""],
    ]
    assert load._pairs(log) == [30.0, 6.0]


def test_pairs_in_windows_keep_the_cycles_whose_next_was_sent_inside_one():
    log = [
        ["next", 1.0, 10.0, 200, "a", 1, None, None, ""],
        ["label", 1.1, 20.0, 201, "a", 1, 7, "k", ""],
        ["next", 5.0, 5.0, 200, "a", 2, None, None, ""],
        ["label", 5.1, 1.0, 201, "a", 2, 8, "k", ""],
        ["next", 9.0, 2.0, 200, "b", 3, None, None, ""],
        ["label", 9.1, 3.0, 201, "b", 3, 9, "k", ""],
    ]
    assert load._pairs(log, [(0.5, 2.0), (8.0, 9.0)]) == [30.0, 5.0]
    assert load._pairs(log, []) == []
