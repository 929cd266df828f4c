"""The run journal: finished videos kept beside a results file, so an interrupted run loses nothing and resumes.

``mse-rt detect -o r.json`` (in process and ``--ray``) keeps ``r.json.journal.jsonl``, JSON lines:

- line 1, the header: ``{"mse_rt_journal": 2, "key": {...}}``; the run key names what produced the
  results (:func:`run_key`: checkpoint sha256 + config, or the model file's sha256; backend, fps,
  id scheme, mse_rt version);
- one line per finished video: ``{"video_id": id, "detections": [ActivityNet entries],
  "source": [size, mtime_ns], "sha256": ...}`` (the feature file's size and modification time when
  it was run; the digest of the line's other three fields and the run key, :func:`_row_digest`: an
  edited line, or one spliced in from another run's journal, is damage, not a result);
- ``{"written": "r.json"}``: the results file was written holding every video above (a run with
  failed videos keeps its journal so that a rerun retries only those).

Rules (the invariants the CLI and the Ray job rely on):

- The results file is written (atomically) only when a run has given every video an outcome; an
  interrupted or crashed run leaves it as it was and its finished videos in the journal.
- Lines are flushed as they are appended (a killed process loses nothing appended) and fsync'ed at
  most once a second and at close. The header goes out with the first video: a run that finishes
  nothing leaves no journal.
- Resuming needs the same run key. A journal of another key is refused (:class:`JournalError`: remove
  it or choose another output), never mixed; only a journal whose videos are all in a written
  results file (last line ``written``) or that holds no video is started afresh.
- A journaled video is reused only while its feature file keeps the same size and modification
  time; a changed file is run again (the later line wins).
- A torn last line (a crash in the middle of a write) is cut off when the journal is opened; any
  other unreadable line is a :class:`JournalError` (the file was damaged: nothing in it is trusted).
- After a run in which every video succeeded the journal is removed (unless it also holds videos
  that are not among that run's inputs: those are not in any results file, so it stays).
- One run at a time per journal: a second run on the same output is refused while the first holds
  the journal's lock (POSIX ``flock``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, InputError, ModelFileError, OutputError
from .files import atomic_write_text, check_not_an_input, check_output_path

JOURNAL_SUFFIX = ".journal.jsonl"
JOURNAL_FORMAT = 2  # 2: every video line carries its sha256
_FSYNC_EVERY_S = 1.0  # bounds what a machine crash (not a process crash) can take from the journal


class JournalError(OutputError):
    """A journal that cannot be resumed: written for another run key, damaged, or in use by another run."""


def journal_path(output: str | Path) -> Path:
    """The journal of the results file ``output``: ``OUTPUT.journal.jsonl`` beside it."""
    output = Path(output)
    return output.with_name(output.name + JOURNAL_SUFFIX)


def check_journal_path(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Before any work: ``output`` is not itself a journal, and its journal can be written and is
    not one of ``inputs``. Returns the journal path; raises :class:`OutputError`."""
    output = Path(output)
    if output.name.endswith(JOURNAL_SUFFIX):
        raise OutputError(f"results file {output} is named like a run journal (*{JOURNAL_SUFFIX}, the journal of "
                          f"{output.name[:-len(JOURNAL_SUFFIX)]}); choose another output name")
    path = journal_path(output)
    check_output_path(path, what="run journal")
    check_not_an_input(path, inputs, what="run journal")
    return path


def file_stamp(path: str | Path) -> list[int] | None:
    """``[size in bytes, modification time in ns]`` of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


def _sha256(path: str | Path, error: type[Exception], what: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return h.hexdigest()


def _describe(factory) -> str:
    """A detector factory's qualified name and bound arguments (``functools.partial`` unwrapped)."""
    args, kwargs = (), {}
    while hasattr(factory, "func") and hasattr(factory, "args"):
        args, kwargs = tuple(factory.args) + args, {**factory.keywords, **kwargs}
        factory = factory.func
    name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__qualname__)}"
    return f"{name}{args!r}{kwargs!r}" if args or kwargs else name


def run_key(*, config: str | Path | None = None, ckpt: str | Path | None = None, model_file: str | Path | None = None,
            factory=None, backend: str = "eager", fps: float | None = None, ids: str = "stem") -> dict:
    """The identity of a detection run (equal keys may share one results file): the checkpoint's and
    loaded config's sha256 (:func:`mse_rt.config.config_to_json`), or a model file's sha256, or a
    ``factory``'s qualified name and bound arguments (it cannot be hashed); the backend (TensorRT runs
    fp16), fps as given (None: the config's default), the id scheme, the mse_rt version. Missing
    files raise the loaders' errors (:class:`CheckpointError`, :class:`ModelFileError`)."""
    from ..version import __version__

    key: dict = {"mse_rt": __version__, "backend": backend, "fps": fps, "ids": ids}
    if model_file is not None:
        key["model_file_sha256"] = _sha256(model_file, ModelFileError, "model file")
    elif factory is not None:
        key["factory"] = _describe(factory)
    else:
        from ..config import config_to_json, load_config

        key["config_sha256"] = hashlib.sha256(config_to_json(load_config(config)).encode()).hexdigest()
        key["checkpoint_sha256"] = _sha256(ckpt, CheckpointError, "checkpoint")
    return json.loads(json.dumps(key))  # the form it has once read back from the header


def _short(v) -> str:
    return f"{v[:12]}..." if isinstance(v, str) and len(v) == 64 else repr(v)


@dataclass
class Settled:
    """What :meth:`Journal.complete` did: ``output`` written (None: no video succeeded, nothing
    written), ``journal_kept`` and ``others`` (journaled videos that are not among the run's inputs)."""

    output: Path | None
    journal_kept: bool
    others: int


class Journal:
    """An open run journal (module docstring); use :meth:`open` and ``with``. ``done``: {video id:
    ActivityNet entries}; ``stamps``: {video id: [size, mtime_ns] of its feature file when run}."""

    def __init__(self, path: Path, key: dict, f, done: dict, stamps: dict, fresh: bool) -> None:
        self.path = path
        self.key = key
        self.done: dict[str, list] = done
        self.stamps: dict[str, list | None] = stamps
        self._f = f
        self._fresh = fresh  # the header (and a truncation) is still to be written
        self._last_sync = time.monotonic()
        self.new: set[str] = set()  # videos journaled by this run

    @classmethod
    def open(cls, output: str | Path, key: dict) -> Journal:
        """Open (or prepare) the journal of ``output`` for a run with ``key``. Reads what it holds,
        cuts a torn last line, takes the lock; :class:`JournalError` for another run's key, a damaged
        file or a journal in use."""
        path = journal_path(output)
        if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1):  # appending would write
            raise JournalError(f"run journal {path} is a link to another file: remove it, or choose another -o")
        try:
            f = open(path, "a+b")  # noqa: SIM115 - held until close()
        except OSError as exc:
            raise OutputError(f"cannot write run journal {path}: {exc.strerror or exc}") from exc
        try:
            _lock(f, path)
            f.seek(0)
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # a torn last line: the crash came in the middle of a write
                f.truncate(end)
                data = data[:end]
            header, done, stamps, written = _parse(path, data)
            fresh = header is None
            if header is not None and header != key:
                if done and not written:
                    diffs = ", ".join(f"{k} {_short(header.get(k))} vs {_short(key.get(k))}"
                                      for k in sorted(set(header) | set(key)) if header.get(k) != key.get(k))
                    raise JournalError(
                        f"run journal {path} holds {len(done)} finished videos of another run ({diffs}); resuming "
                        "would mix the results of two runs: remove the journal to start over, or choose another -o")
                done, stamps, fresh = {}, {}, True  # everything in it is in a written results file
        except BaseException:
            f.close()
            raise
        return cls(path, key, f, done, stamps, fresh)

    def reusable(self, video_id: str, stamp: list[int] | None) -> bool:
        """Whether ``video_id`` is journaled from a feature file that still has ``stamp``."""
        return stamp is not None and video_id in self.done and self.stamps.get(video_id) == stamp

    def append(self, rows: Iterable[tuple[str, list, list[int] | None]]) -> None:
        """Journal finished videos ``(video id, ActivityNet entries, file stamp)``; flushed at once."""
        rows = list(rows)
        try:  # NaN / Infinity are not JSON: refused here as well as in the results file
            lines = []
            for v, d, s in rows:
                row = {"video_id": v, "detections": d, "source": s}
                lines.append(json.dumps({**row, "sha256": _row_digest(row, self.key)}, allow_nan=False) + "\n")
        except ValueError as exc:
            raise InputError(f"refusing to journal non-finite detections ({exc})") from None
        if not lines:
            return
        with _interrupts_deferred():  # the lines and what the caller is told about them stay in step
            if self._fresh:
                self._f.truncate(0)
                lines.insert(0, json.dumps({"mse_rt_journal": JOURNAL_FORMAT, "key": self.key}) + "\n")
                self._fresh = False
            self._write("".join(lines))
            for v, d, s in rows:
                self.done[v], self.stamps[v] = d, s
                self.new.add(v)

    def _write(self, text: str) -> None:
        try:
            self._f.write(text.encode())
            self._f.flush()
            if time.monotonic() - self._last_sync >= _FSYNC_EVERY_S:
                os.fsync(self._f.fileno())
                self._last_sync = time.monotonic()
        except OSError as exc:
            raise OutputError(f"cannot write run journal {self.path}: {exc.strerror or exc}") from exc

    def complete(self, output: str | Path, ids: Sequence[str], any_failed: bool, jsonl: bool = False) -> Settled:
        """End of a run that gave every video an outcome: write the results of ``ids`` (input order;
        each must be journaled, i.e. reused or newly finished) to ``output`` atomically, unless there
        are none (then nothing is written, an earlier file stays), and settle the journal: removed when
        no video failed and it holds no other video, else kept (marked written when the results file
        holds all its videos)."""
        results = {v: self.done[v] for v in ids}
        ids_set = set(ids)
        others = sum(1 for v in self.done if v not in ids_set)
        if not results:
            return Settled(None, self._holds_lines(), others)
        try:
            if jsonl:
                text = "".join(json.dumps({"video_id": v, "detections": d}, allow_nan=False) + "\n"
                               for v, d in results.items())
                out = atomic_write_text(output, text, what="results JSON lines")
            else:
                out = atomic_write_text(output, json.dumps({"version": "mse_rt", "results": results,
                                                            "external_data": {}}, allow_nan=False), what="results JSON")
        except OutputError as exc:  # a full disk: the earlier file is whole, the results wait in the journal
            raise OutputError(f"{exc}; the {len(self.done)} finished videos are kept in {self.path}: rerun the same "
                              "command to write them (nothing is run again)") from exc
        if not any_failed and not others:
            self.remove()
            return Settled(out, False, 0)
        if not others:
            self._write(json.dumps({"written": Path(output).name}) + "\n")
        return Settled(out, True, others)

    def _holds_lines(self) -> bool:
        return self._f is not None and os.fstat(self._f.fileno()).st_size > 0

    def remove(self) -> None:
        """Delete the journal file (while still holding its lock, so no other run is opening it) and close."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot remove run journal {self.path}: {exc.strerror or exc}") from exc
        self.close()

    def close(self, quiet: bool = False) -> None:
        """Flush, fsync and unlock; an empty journal file (nothing was ever journaled) is removed. A
        failing flush (a full disk) is an :class:`OutputError`, or ignored with ``quiet`` (the error
        already on its way names the journal; every complete line is in the file)."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            f.flush()
            os.fsync(f.fileno())
            if f.seek(0, os.SEEK_END) == 0:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            if not quiet:
                raise OutputError(f"cannot write run journal {self.path}: {exc.strerror or exc}") from exc
        finally:
            try:
                f.close()
            except OSError:  # the same unwritable bytes again: reported above (or by the error in flight)
                pass

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(quiet=exc_type is not None)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT / SIGTERM arriving inside the block take effect right after it (re-sent to this process
    once the previous handlers are back), so an interrupt never tears a journal line nor leaves a
    written line unaccounted for. Only the main thread can install handlers; elsewhere a no-op."""
    wanted = (signal.SIGINT, signal.SIGTERM)
    # a handler installed outside Python (None) could not be put back: then no deferral
    if threading.current_thread() is not threading.main_thread() or any(signal.getsignal(s) is None for s in wanted):
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in pending:
            handler = previous[s]
            if callable(handler):
                # a Python handler runs here, synchronously: os.kill may deliver the signal to another
                # thread (OpenMP / OpenVINO pools), and Python would act on it only a moment later
                handler(s, None)
            else:
                os.kill(os.getpid(), s)  # SIG_DFL / SIG_IGN: what the process would have done


def read_journal(path: str | Path) -> dict[str, list]:
    """{video id: ActivityNet entries} of a run journal, only read (no lock, nothing cut); a torn
    last line is ignored, an absent journal is empty; :class:`JournalError` for a damaged one."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    return _parse(path, data[:data.rfind(b"\n") + 1])[1]


def _lock(f, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(f"run journal {path} is in use by another run on the same output; wait for it to end, or "
                           "choose another -o") from None
    except OSError:  # a file system without locks (some network mounts): run unlocked
        pass


def _parse(path: Path, data: bytes):
    """(header key or None, done, stamps, written) of a journal's complete lines."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines:
        return None, {}, {}, False
    header = _json_line(path, lines[0], 1)
    if not (isinstance(header, dict) and header.get("mse_rt_journal") == JOURNAL_FORMAT
            and isinstance(header.get("key"), dict)):
        raise JournalError(f"run journal {path} has no mse_rt journal header (written by another program or an older "
                           "mse_rt): remove it to start over, or choose another -o")
    done: dict[str, list] = {}
    stamps: dict[str, list | None] = {}
    written = False
    for n, line in enumerate(lines[1:], start=2):
        row = _json_line(path, line, n)
        if isinstance(row, dict) and set(row) == {"written"}:
            written = True
            continue
        if not (isinstance(row, dict) and isinstance(row.get("video_id"), str) and isinstance(row.get("detections"), list)
                and (row.get("source") is None or _is_stamp(row["source"]))):
            raise JournalError(f"run journal {path} is damaged at line {n} (not a finished video): remove it to "
                               "start over, or choose another -o")
        digest = row.pop("sha256", None)
        if set(row) != {"video_id", "detections", "source"} or digest != _row_digest(row, header["key"]):
            raise JournalError(f"run journal {path} is damaged at line {n} (its checksum does not match: edited, "
                               "corrupted or from another run): remove it to start over, or choose another -o")
        done[row["video_id"]] = row["detections"]
        stamps[row["video_id"]] = row.get("source")
        written = False
    return header["key"], done, stamps, written


def _row_digest(row: dict, key: dict) -> str:
    """sha256 of a video line's fields and its run key as canonical JSON (floats round-trip exactly)."""
    text = json.dumps({"key": key, "row": row}, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_stamp(s) -> bool:
    return isinstance(s, list) and len(s) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in s)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_line(path: Path, line: str, n: int):
    try:
        return json.loads(line, parse_constant=_refuse_constant)  # NaN / Infinity: not JSON, not a detection
    except ValueError:
        raise JournalError(f"run journal {path} is damaged at line {n} (not JSON): remove it to start over, or "
                           "choose another -o") from None
