"""The benchmarks' own arithmetic: bench/repeat.py's summary, the open loop's
stalls, the writeback bursts, the statement report's labels."""

from __future__ import annotations

from bench._load import LoadResult
from bench._stack import DirtyPages
from bench.repeat import numbers, summarise


def test_every_number_is_summarised_by_its_dotted_path() -> None:
    runs = [
        {"bench": "x", "rate": 190.0, "cpu": {"web": 1.5, "db": 3}, "ok": True},
        {"bench": "x", "rate": 230.0, "cpu": {"web": 1.1, "db": 2}, "ok": True},
        {"bench": "x", "rate": 210.0, "cpu": {"web": 1.3}, "ok": False},
    ]
    assert numbers(runs[0]) == {"rate": 190.0, "cpu.web": 1.5, "cpu.db": 3.0}
    out = summarise(runs, {"rate": 200.0, "missing": 1.0})
    assert out["runs"] == 3
    assert out["stats"]["rate"] == {"median": 210.0, "min": 190.0, "max": 230.0, "runs": 3}
    assert out["stats"]["cpu.db"] == {"median": 2.5, "min": 2.0, "max": 3.0, "runs": 2}
    assert "ok" not in out["stats"]
    assert out["targets_met"] == {"rate >= 200": 2, "missing >= 1": 0}


def test_an_open_loop_reports_its_worst_windows_over_the_threshold() -> None:
    r = LoadResult()
    # steady 5 ms, one stall at 2.2 s decaying over 300 ms, a lesser one at 7.05 s
    r.timeline = [(i / 1000, 5.0) for i in range(10_000)]
    r.timeline += [(2.2 + i / 1000, 250.0 - i * 0.8) for i in range(300)]
    r.timeline += [(7.05, 60.0), (7.06, 49.0)]
    assert r.stalls() == [[2.2, 250.0], [2.3, 170.0], [2.4, 90.0]]
    assert r.stalls(top=5)[-1] == [7.0, 60.0]
    assert r.stalls(over_ms=300) == []


def test_a_writeback_burst_is_a_large_drop_of_dirty_pages() -> None:
    d = DirtyPages()
    d.samples = [(0.0, 100.0), (0.25, 120.0), (0.5, 150.0), (0.75, 2.0), (1.0, 10.0), (1.25, 0.0)]
    assert d.drops() == [[0.75, 150.0, 2.0]]
    assert d.drops(min_mb=5) == [[0.75, 150.0, 2.0], [1.25, 10.0, 0.0]]


def test_a_prepared_statement_is_reported_by_its_sql() -> None:
    from bench.pipeline import statement_label

    prepared = "PREPARE iras_0123abcd (text, TIMESTAMP WITH TIME ZONE, NUMERIC(10, 2)) AS SELECT a\n  FROM t WHERE b = $1"
    assert statement_label(prepared) == "SELECT a FROM t WHERE b = $1"
    assert statement_label("SELECT x AS y FROM t") == "SELECT x AS y FROM t"
    assert len(statement_label("SELECT " + "x, " * 100)) == 160
