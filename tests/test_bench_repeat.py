"""bench/repeat.py's summary of several runs."""

from __future__ import annotations

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
