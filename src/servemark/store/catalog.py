"""The catalog of runs: an SQLite database (stdlib) under the results root, one row per run and
one per load point. Run directories stay the source of truth; the catalog is an index that can be
rebuilt from them at any time (``rebuild``), and is rebuilt automatically when its schema changes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError, DependencyError, ResultsError
from servemark.store.rundir import REQUESTS, SUMMARY_JSON, load_summary

CATALOG_FILE = "catalog.sqlite"
TAGS_FILE = "tags.json"  # optional, in a run directory: ["tag", ...] (kept by `runs tag`)
SCHEMA_VERSION = 1
MAX_DEPTH = 4  # how deep under the root `rebuild` looks for run directories

_RUN_COLUMNS = ("run_id", "path", "model", "status", "started_at", "finished_at", "base_url",
                "server_version", "servemark_version", "host", "api", "input_len", "output_len",
                "num_points", "completed", "failed", "max_total_tokens_per_s", "tags")
_POINT_COLUMNS = ("run_id", "idx", "label", "concurrency", "request_rate", "completed", "failed",
                  "duration_s", "requests_per_s", "output_tokens_per_s", "total_tokens_per_s",
                  "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "itl_p50_ms",
                  "itl_p99_ms", "e2e_p50_ms", "e2e_p99_ms")
_DDL = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(c + (" TEXT PRIMARY KEY" if c == "run_id" else "") for c in _RUN_COLUMNS)});
CREATE TABLE IF NOT EXISTS points ({", ".join(_POINT_COLUMNS)}, PRIMARY KEY (run_id, idx));
CREATE TABLE IF NOT EXISTS tags (run_id TEXT, tag TEXT, PRIMARY KEY (run_id, tag));
CREATE INDEX IF NOT EXISTS runs_model ON runs (model);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass
class RunEntry:
    """One catalogued run (a row of ``runs`` plus its load points)."""

    run_id: str
    path: Path
    model: str | None
    status: str | None
    started_at: str | None
    row: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)


def catalog_path(root: Path) -> Path:
    return Path(root) / CATALOG_FILE


def run_id_for(run_dir: Path, root: Path) -> str:
    """The run's path relative to the root (its directory name for runs directly under it)."""
    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()
    try:
        return run_dir.relative_to(root).as_posix()
    except ValueError:
        return str(run_dir)


def read_tags(run_dir: Path, doc: dict[str, Any] | None = None) -> list[str]:
    """Tags from summary.json (``tags``) and the run's tags.json, deduplicated, in order."""
    tags: list[str] = []
    if doc:
        tags += [str(t) for t in doc.get("tags") or []]
        tags += [str(t) for t in (doc.get("config") or {}).get("tags") or []]
    with contextlib.suppress(OSError, ValueError):
        tags += [str(t) for t in json.loads((Path(run_dir) / TAGS_FILE).read_text())]
    return list(dict.fromkeys(t for t in tags if t))


def _ms(dist: dict[str, Any] | None, stat: str) -> float | None:
    value = (dist or {}).get(stat)
    return None if value is None else float(value) * 1000.0


def _rows(run_dir: Path, root: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    doc = load_summary(run_dir)
    rid = run_id_for(run_dir, root)
    prov = doc.get("provenance") or {}
    cfg = doc.get("config") or {}
    endpoint = doc.get("endpoint") or {}
    points = doc.get("points") or []
    tags = read_tags(run_dir, doc)
    throughputs = [p["total_tokens_per_s"] for p in points if p.get("total_tokens_per_s") is not None]
    run = {
        "run_id": rid, "path": str(Path(run_dir).resolve()), "model": doc.get("model"),
        "status": doc.get("status"), "started_at": doc.get("started_at"),
        "finished_at": doc.get("finished_at"), "base_url": endpoint.get("base_url"),
        "server_version": endpoint.get("server_version"),
        "servemark_version": prov.get("servemark_version"), "host": prov.get("host"),
        "api": cfg.get("api"), "input_len": cfg.get("input_len"), "output_len": cfg.get("output_len"),
        "num_points": len(points), "completed": sum(p.get("completed") or 0 for p in points),
        "failed": sum(p.get("failed") or 0 for p in points),
        "max_total_tokens_per_s": max(throughputs) if throughputs else None,
        "tags": ",".join(tags),
    }
    prows = []
    for i, p in enumerate(points):
        row = {"run_id": rid, "idx": i}
        for key in ("label", "concurrency", "request_rate", "completed", "failed", "duration_s",
                    "requests_per_s", "output_tokens_per_s", "total_tokens_per_s"):
            row[key] = p.get(key)
        for metric in ("ttft", "tpot", "itl", "e2e"):
            for stat in ("p50", "p99"):
                row[f"{metric}_{stat}_ms"] = _ms(p.get(f"{metric}_s"), stat)
        prows.append(row)
    return run, prows, tags


class Catalog:
    """The catalog of one results root. Use as a context manager (closes the connection)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"results root {self.root} does not exist",
                              "pass --results-root, the directory that holds your run directories")
        try:
            self.db = sqlite3.connect(catalog_path(self.root), timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ResultsError(f"cannot open the run catalog in {self.root}: {exc}",
                               "pass a writable --results-root") from exc
        self.db.row_factory = sqlite3.Row
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self.rebuild()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _reset(self) -> None:
        with self.db:
            for table in ("runs", "points", "tags"):
                self.db.execute(f"DROP TABLE IF EXISTS {table}")
        self.db.executescript(_DDL)

    def register(self, run_dir: Path) -> str:
        """Insert or replace one run from its directory; returns its run id."""
        run, prows, tags = _rows(Path(run_dir), self.root)
        rid = run["run_id"]
        with self.db:
            self.db.execute("DELETE FROM points WHERE run_id = ?", (rid,))
            self.db.execute("DELETE FROM tags WHERE run_id = ?", (rid,))
            self.db.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(_RUN_COLUMNS))})",
                            [run[c] for c in _RUN_COLUMNS])
            self.db.executemany(f"INSERT INTO points VALUES ({', '.join('?' * len(_POINT_COLUMNS))})",
                                [[r[c] for c in _POINT_COLUMNS] for r in prows])
            self.db.executemany("INSERT INTO tags VALUES (?, ?)", [(rid, t) for t in tags])
        return rid

    def rebuild(self) -> list[str]:
        """Drop everything and re-register every run directory found under the root."""
        self._reset()
        ids = []
        for run_dir in find_run_dirs(self.root):
            # an unreadable or malformed summary is skipped, not fatal
            with contextlib.suppress(ResultsError, TypeError, ValueError, AttributeError):
                ids.append(self.register(run_dir))
        return ids

    def add_tags(self, ref: str, tags: Sequence[str]) -> RunEntry:
        """Add tags to a run: written to its tags.json (so a rebuild keeps them), then re-registered."""
        entry = self.get(ref)
        current = read_tags(entry.path)
        path = entry.path / TAGS_FILE
        try:
            path.write_text(json.dumps(list(dict.fromkeys([*current, *tags]))))
        except OSError as exc:
            raise ResultsError(f"cannot write {path}: {exc.strerror}", "check permissions") from exc
        self.register(entry.path)
        return self.get(entry.run_id)

    def query(self, model: str | None = None, since: str | None = None,
             tags: Sequence[str] = ()) -> list[RunEntry]:
        """Runs, newest first. ``model`` matches a substring; ``since`` is an ISO date or time
        (UTC unless it carries an offset); every tag given must be present."""
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if model:
            sql += " AND model LIKE ?"
            args.append(f"%{model}%")
        if since:
            sql += " AND started_at >= ?"
            args.append(parse_since(since))
        for tag in tags:
            sql += " AND run_id IN (SELECT run_id FROM tags WHERE tag = ?)"
            args.append(tag)
        rows = self.db.execute(sql + " ORDER BY started_at DESC, run_id", args).fetchall()
        return [self._entry(dict(r)) for r in rows]

    def get(self, ref: str) -> RunEntry:
        """A run by id, unique id prefix, or directory path."""
        rows = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (ref,)).fetchall()
        path = Path(ref)
        if not rows and (path / SUMMARY_JSON).is_file():  # a directory: catalogue it if new
            if not path.resolve().is_relative_to(self.root.resolve()):
                raise ConfigError(f"{ref} is not under the results root {self.root}",
                                  "pass --results-root, the directory that holds the run")
            rid = run_id_for(path, self.root)
            if not self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (rid,)).fetchone():
                self.register(path)
            rows = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (rid,)).fetchall()
        if not rows:
            rows = self.db.execute("SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\'",
                                   (_like_prefix(ref),)).fetchall()
        if not rows:
            raise ConfigError(f"no run {ref!r} in the catalog of {self.root}",
                              "see `servemark runs list` (or `servemark runs rebuild`)")
        if len(rows) > 1:
            names = ", ".join(r["run_id"] for r in rows[:5])
            raise ConfigError(f"{ref!r} matches {len(rows)} runs ({names})", "give more of the id")
        return self._entry(dict(rows[0]))

    def _entry(self, row: dict[str, Any]) -> RunEntry:
        points = [dict(r) for r in self.db.execute(
            "SELECT * FROM points WHERE run_id = ? ORDER BY idx", (row["run_id"],))]
        tags = [r[0] for r in self.db.execute("SELECT tag FROM tags WHERE run_id = ? ORDER BY tag",
                                              (row["run_id"],))]
        return RunEntry(row["run_id"], Path(row["path"]), row["model"], row["status"],
                        row["started_at"], row, tags, points)

    def export_rows(self) -> list[dict[str, Any]]:
        """One row per load point, with its run's columns (the shape spreadsheets want)."""
        run_cols = [c for c in _RUN_COLUMNS if c != "run_id"]
        point_cols = [c for c in _POINT_COLUMNS if c not in ("run_id", "idx")]
        sql = (f"SELECT r.run_id, {', '.join('r.' + c for c in run_cols)}, "
               f"p.idx AS point_index, {', '.join('p.' + c for c in point_cols)} "
               "FROM runs r LEFT JOIN points p ON p.run_id = r.run_id "
               "ORDER BY r.started_at, r.run_id, p.idx")
        return [dict(r) for r in self.db.execute(sql)]

    def export(self, fmt: str, out: Path) -> int:
        """Write the export rows as CSV or Parquet; returns the number of rows."""
        rows = self.export_rows()
        if fmt == "csv":
            write_csv(rows, out)
        elif fmt == "parquet":
            write_parquet(rows, out)
        else:
            raise ConfigError(f"unknown export format {fmt!r}", "use --format csv or --format parquet")
        return len(rows)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def find_run_dirs(root: Path) -> Iterator[Path]:
    """Directories under root (up to MAX_DEPTH levels) holding summary.json and requests.jsonl."""
    root = Path(root)
    level = [root]
    for _ in range(MAX_DEPTH + 1):
        nxt = []
        for d in sorted(level):
            if (d / SUMMARY_JSON).is_file() and (d / REQUESTS).exists():
                yield d
                continue
            with contextlib.suppress(OSError):
                nxt += [c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")]
        level = nxt


def parse_since(text: str) -> str:
    """An ISO date/time as the UTC ISO string summary.json uses (so strings compare in order)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO date or time",
                          "for example --since 2025-01-31 or --since 2025-01-31T12:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    try:
        with open(out, "w", newline="") as fh:
            if rows:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise ResultsError(f"cannot write {out}: {exc.strerror}", "pick a writable --out") from exc


def write_parquet(rows: list[dict[str, Any]], out: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyError("Parquet export needs pyarrow, which is not installed",
                              "pip install 'servemark[parquet]' (or use --format csv)") from None
    columns = list(rows[0]) if rows else [*_RUN_COLUMNS, "point_index"]
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    try:
        pq.write_table(table, out)
    except OSError as exc:
        raise ResultsError(f"cannot write {out}: {exc}", "pick a writable --out") from exc


def resolve_run(ref: str, results_root: Path) -> Path:
    """A run directory from a path or a catalog id (or unique id prefix) under results_root."""
    path = Path(ref)
    if (path / SUMMARY_JSON).is_file():
        return path
    if path.exists():
        raise ConfigError(f"{ref} is not a servemark run directory (no {SUMMARY_JSON})",
                          "pass a directory written by `servemark bench`")
    if not catalog_path(results_root).exists() and not Path(results_root).is_dir():
        raise ConfigError(f"{ref!r} is neither a run directory nor a run in {results_root}",
                          "pass a run directory, or --results-root where the catalog lives")
    with Catalog(results_root) as cat:
        return cat.get(ref).path


def catalog_root_for(run_dir: Path, results_root: Path) -> Path:
    """The results root whose catalog a run belongs to: ``results_root`` when the run lies under
    it, otherwise the run directory's parent (a run written elsewhere with --output-dir)."""
    run_dir, results_root = Path(run_dir).resolve(), Path(results_root).resolve()
    return results_root if run_dir.is_relative_to(results_root) else run_dir.parent


def register_run(run_dir: Path, results_root: Path) -> str | None:
    """Register a finished run; never raises (the catalog is derived data and can be rebuilt).
    Returns an error message when registration failed, else None."""
    try:
        with Catalog(catalog_root_for(run_dir, results_root)) as cat:
            cat.register(run_dir)
        return None
    except Exception as exc:  # noqa: BLE001 — a catalog problem must never fail a benchmark
        return f"run not catalogued ({exc}); `servemark runs rebuild` can add it later"
