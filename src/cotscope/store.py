"""The run directory's store: config, one JSONL record per sample (appended and flushed as each
finishes). A killed run resumes from it without recomputing or duplicating. Records are
validated against each experiment's result type when they load; records of an older schema
are migrated (see `cotscope.records`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

from ._errors import CotscopeError, first_error
from .config import CONFIG_VERSION, AuditConfig
from .experiments import Experiment
from .records import SampleRecord

def read_lines(path: Path, *, repair: bool = False) -> list[tuple[int, bytes]]:
    """The non-empty lines of a JSONL file that is appended to as work finishes, with their
    line numbers. Every record is written as one line ending in a newline; text after the last
    newline is a write in progress or one that a kill interrupted, and is not read.

    Args:
        repair: The caller is the run's writer, resuming it: a torn last line is cut off the
            file (with a warning) so that its work is done again and appended cleanly. A reader
            (a report, `drift`, a comparison) leaves the file as it is: the writer may be
            finishing that very line.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw.rfind(b"\n") + 1
    if complete < len(raw) and repair:
        torn_line = raw.count(b"\n", 0, complete) + 1
        warnings.warn(f"{path}:{torn_line}: torn last line (the run was killed mid-write); dropping it", stacklevel=3)
        with path.open("r+b") as fh:
            fh.truncate(complete)
            fh.flush()
            os.fsync(fh.fileno())
    return [(i, line) for i, line in enumerate(raw[:complete].split(b"\n")[:-1], 1) if line.strip()]


def append_line(path: Path, line: str) -> None:
    """Append one record line and make it durable before going on."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def check_config_file(path: Path, config: BaseModel, what: str) -> None:
    """Refuse a run directory whose ``config.json`` holds a different config of the same type.

    Raises:
        CotscopeError: naming the fields that differ, or saying the file is no such config.
    """
    if not path.exists():
        return
    try:
        old = type(config).model_validate(json.loads(path.read_text())["config"])
    except (json.JSONDecodeError, KeyError, ValidationError) as exc:
        raise CotscopeError(f"{path} is not a cotscope {what} config: {exc}") from exc
    if old != config:
        was, now = old.model_dump(), config.model_dump()
        diff = {k: (v, now[k]) for k, v in was.items() if now[k] != v}
        raise CotscopeError(f"{path.parent} holds a {what} run with a different config (was -> now: {diff}); use another --out directory")


def make_dir(path: Path) -> None:
    """Create a directory (and its parents) so that it survives a crash: each new folder's
    parent is fsynced after it is made."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        _fsync_dir(d.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open a folder (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_durably(path: Path, text: str) -> None:
    """Write a file atomically and durably: a temporary file, fsynced, renamed into place, and
    the folder fsynced, so that a crash leaves the old file or the whole new one."""
    make_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_config_file(path: Path, config: BaseModel, kind: str, version: int = 1) -> None:
    """Write ``config.json`` once, atomically and durably."""
    if path.exists():
        return
    write_text_durably(path, json.dumps({"schema_version": version, "kind": kind, "config": config.model_dump(mode="json")}, indent=2))


class RunStore:
    """Append-only storage of sample records in a run directory."""

    def __init__(
        self, run_dir: str | Path, config: AuditConfig, experiments: Sequence[Experiment] = (), *, create: bool = True, writer: bool = False
    ) -> None:
        """Open a run directory; `writer` (or `create`) says this process appends to it, so a
        torn last line is cut off the file; a reader only skips it."""
        self.dir = Path(run_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise CotscopeError(f"run directory {self.dir} is an existing file; give --out a directory")
        self.experiments = {e.name: e for e in experiments}
        self.config = config
        self.config_path = self.dir / "config.json"
        self.samples_path = self.dir / "samples.jsonl"
        self.stored_config: AuditConfig | None = None  # the config a run being resumed was started with
        self._check_config(config, write=False)
        self.records: dict[str, SampleRecord] = self._load(repair=writer or create)
        if create:
            self.open()

    def open(self) -> None:
        """Create the directory and write the config: done only once there is work to store,
        so a run that fails before its first sample leaves nothing behind."""
        make_dir(self.dir)
        self._check_config(self.config, write=True)

    def _check_config(self, config: AuditConfig, write: bool = True) -> None:
        body = {"schema_version": CONFIG_VERSION, "config": config.model_dump(mode="json")}
        if self.config_path.exists():
            try:
                old = json.loads(self.config_path.read_text())
                old_cfg = AuditConfig.model_validate(old["config"])
            except (json.JSONDecodeError, KeyError, ValidationError) as exc:
                raise CotscopeError(f"{self.config_path} is not a cotscope run config: {exc}") from exc
            self.stored_config = old_cfg
            if old_cfg.identity() != config.identity():
                diff = {k: (v, config.identity()[k]) for k, v in old_cfg.identity().items() if config.identity()[k] != v}
                raise CotscopeError(
                    f"{self.dir} holds a run with a different config (was -> now: {diff}); use another --out directory"
                )
        if not write:
            return
        write_text_durably(self.config_path, json.dumps(body, indent=2))

    def _load(self, repair: bool) -> dict[str, SampleRecord]:
        records: dict[str, SampleRecord] = {}
        if not self.samples_path.exists():
            return records
        for lineno, line in read_lines(self.samples_path, repair=repair):
            try:
                rec = SampleRecord.model_validate_json(line)
            except ValidationError as exc:
                where, err = first_error(exc)
                raise CotscopeError(
                    f"{self.samples_path}:{lineno}: not a valid sample record ({where}: {err['msg']})"
                ) from exc
            for name, raw in rec.results.items():
                exp = self.experiments.get(name)
                if exp is None:
                    continue
                try:
                    rec.results[name] = [exp.Result.model_validate(r) if isinstance(r, dict) else r for r in raw]
                except ValidationError as exc:
                    where, err = first_error(exc)
                    raise CotscopeError(
                        f"{self.samples_path}:{lineno}: results of experiment {name!r} do not fit its result type ({where}: {err['msg']})"
                    ) from exc
            if rec.sample.id in records:
                warnings.warn(f"{self.samples_path}:{lineno}: duplicate sample {rec.sample.id!r}; keeping the first", stacklevel=3)
                continue
            records[rec.sample.id] = rec
        return records

    def append(self, record: SampleRecord) -> None:
        if not self.config_path.exists():
            self.open()
        if record.sample.id in self.records:
            raise CotscopeError(f"sample {record.sample.id!r} is already stored in {self.samples_path}")
        append_line(self.samples_path, record.model_dump_json() + "\n")
        self.records[record.sample.id] = record
