"""The run catalog: register/list/show/export round trip, filters, tags, rebuild from directories."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runfactory import simple_run
from servemark.cli.main import app
from servemark.errors import ConfigError, DependencyError
from servemark.store import catalog as catalog_mod
from servemark.store.catalog import (
    Catalog,
    catalog_path,
    catalog_root_for,
    register_run,
    resolve_run,
)
from tests.conftest import need


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "results"
    simple_run(r / "20250110-tiny", model="tiny", started_at="2025-01-10T09:00:00+00:00")
    simple_run(r / "20250120-tiny", model="tiny", started_at="2025-01-20T09:00:00+00:00", seed=1,
               extra={"tags": ["nightly"]})
    simple_run(r / "sweeps" / "20250125-llama", model="meta-llama/Llama-3.1-8B",
               started_at="2025-01-25T09:00:00+00:00", labels=("c=1",))
    return r


def test_register_and_query_round_trip(root: Path) -> None:
    with Catalog(root) as cat:
        ids = [cat.register(d) for d in sorted(p.parent for p in root.rglob("summary.json"))]
        assert sorted(ids) == ["20250110-tiny", "20250120-tiny", "sweeps/20250125-llama"]
        runs = cat.query()
        assert [r.run_id for r in runs] == ["sweeps/20250125-llama", "20250120-tiny", "20250110-tiny"]
        e = cat.get("20250120")  # unique prefix
        doc = json.loads((root / "20250120-tiny" / "summary.json").read_text())
        assert e.model == "tiny" and e.tags == ["nightly"] and e.path == (root / "20250120-tiny").resolve()
        assert [p["label"] for p in e.points] == ["c=1", "c=4"]
        assert e.points[1]["total_tokens_per_s"] == doc["points"][1]["total_tokens_per_s"]
        assert e.points[0]["ttft_p99_ms"] == pytest.approx(doc["points"][0]["ttft_s"]["p99"] * 1000)
        assert e.row["completed"] == 60 and e.row["num_points"] == 2
        # filters
        assert [r.run_id for r in cat.query(model="llama")] == ["sweeps/20250125-llama"]
        assert [r.run_id for r in cat.query(since="2025-01-15")] == ["sweeps/20250125-llama", "20250120-tiny"]
        assert [r.run_id for r in cat.query(tags=["nightly"])] == ["20250120-tiny"]
        assert cat.query(tags=["nightly", "other"]) == []
        with pytest.raises(ConfigError, match="matches 2 runs"):
            cat.get("202501")
        with pytest.raises(ConfigError, match="no run"):
            cat.get("nope")
        with pytest.raises(ConfigError, match="ISO"):
            cat.query(since="last tuesday")


def test_rebuild_from_directories_and_tags_survive(root: Path) -> None:
    with Catalog(root) as cat:  # a fresh catalog builds itself from the directories
        assert len(cat.query()) == 3
        cat.add_tags("20250110-tiny", ["baseline", "tp1"])
    catalog_path(root).unlink()
    shutil.rmtree(root / "20250120-tiny")
    with Catalog(root) as cat:
        assert [r.run_id for r in cat.query()] == ["sweeps/20250125-llama", "20250110-tiny"]
        assert cat.get("20250110-tiny").tags == ["baseline", "tp1"]  # kept in the run's tags.json
        # rebuild drops runs whose directories are gone
        (root / "20250110-tiny" / "summary.json").unlink()
        assert cat.rebuild() == ["sweeps/20250125-llama"]


def test_schema_change_triggers_rebuild(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Catalog(root).close()
    old = catalog_mod.SCHEMA_VERSION
    monkeypatch.setattr(catalog_mod, "SCHEMA_VERSION", old + 1)
    monkeypatch.setattr(catalog_mod, "_DDL", catalog_mod._DDL.replace(
        f"user_version = {old}", f"user_version = {old + 1}"))
    with Catalog(root) as cat:
        assert cat.db.execute("PRAGMA user_version").fetchone()[0] == catalog_mod.SCHEMA_VERSION
        assert len(cat.query()) == 3


def test_export_csv_and_parquet(root: Path, tmp_path: Path) -> None:
    with Catalog(root) as cat:
        n = cat.export("csv", tmp_path / "runs.csv")
        with open(tmp_path / "runs.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert n == len(rows) == 5  # one row per load point
        assert {r["label"] for r in rows} == {"c=1", "c=4"}
        assert {r["model"] for r in rows} == {"tiny", "meta-llama/Llama-3.1-8B"}
        with pytest.raises(ConfigError):
            cat.export("xlsx", tmp_path / "x")
        if importlib.util.find_spec("pyarrow") is None:
            with pytest.raises(DependencyError, match="pyarrow"):
                cat.export("parquet", tmp_path / "runs.parquet")
        need(importlib.util.find_spec("pyarrow") is not None, "pyarrow (servemark[parquet]) not installed")
        import pyarrow.parquet as pq

        assert cat.export("parquet", tmp_path / "runs.parquet") == 5
        table = pq.read_table(tmp_path / "runs.parquet")
        assert table.num_rows == 5 and "ttft_p99_ms" in table.column_names


def test_register_run_never_raises_and_picks_the_root(tmp_path: Path) -> None:
    run = simple_run(tmp_path / "elsewhere" / "r1")
    assert catalog_root_for(run, tmp_path / "results") == tmp_path / "elsewhere"
    assert catalog_root_for(tmp_path / "results" / "x", tmp_path / "results") == (tmp_path / "results").resolve()
    assert register_run(run, tmp_path / "results") is None
    with Catalog(tmp_path / "elsewhere") as cat:
        assert [r.run_id for r in cat.query()] == ["r1"]
    (run / "summary.json").write_text("{torn")
    assert "not catalogued" in (register_run(run, tmp_path / "results") or "")


def test_resolve_run(root: Path, tmp_path: Path) -> None:
    assert resolve_run(str(root / "20250110-tiny"), root) == root / "20250110-tiny"
    assert resolve_run("sweeps/2025", root) == (root / "sweeps" / "20250125-llama").resolve()
    with pytest.raises(ConfigError, match="not a servemark run directory"):
        resolve_run(str(tmp_path), root)
    with pytest.raises(ConfigError, match="neither"):
        resolve_run("x", tmp_path / "missing")


def test_cli_runs_commands(root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = ["--results-root", str(root)]
    res = runner.invoke(app, ["runs", "list", "--json", "--model", "tiny", *r])
    assert res.exit_code == 0, res.output
    assert [e["run_id"] for e in json.loads(res.stdout)] == ["20250120-tiny", "20250110-tiny"]
    res = runner.invoke(app, ["runs", "tag", "20250110-tiny", "gate", *r])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["runs", "list", "--tag", "gate", "--json", *r])
    assert [e["run_id"] for e in json.loads(res.stdout)] == ["20250110-tiny"]
    res = runner.invoke(app, ["runs", "show", "sweeps/", "--json", *r])
    assert res.exit_code == 0 and json.loads(res.stdout)["model"] == "meta-llama/Llama-3.1-8B"
    res = runner.invoke(app, ["runs", "show", "nothing-like-this", *r])
    assert res.exit_code == 2 and "no run" in res.stderr
    out = tmp_path / "export.csv"
    res = runner.invoke(app, ["runs", "export", "--format", "csv", "--out", str(out), *r])
    assert res.exit_code == 0 and len(out.read_text().splitlines()) == 6
    res = runner.invoke(app, ["runs", "rebuild", *r])
    assert res.exit_code == 0 and "3 runs" in res.stderr
    res = runner.invoke(app, ["runs", "list", *r])
    assert res.exit_code == 0 and "20250110-tiny" in res.stdout
