"""The run journal (mse_rt.io.journal): what a crash, an interrupt or another model's run may and may not do
to the finished videos and to an earlier results file. Files are compared by sha256 where they must not change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from mse_rt.errors import CheckpointError, ModelFileError, OutputError
from mse_rt.io.journal import (
    Journal,
    JournalError,
    check_journal_path,
    file_stamp,
    journal_path,
    read_journal,
    run_key,
)

from golden_utils import GOLDEN

KEY = {"mse_rt": "x", "backend": "eager", "fps": 30.0, "ids": "stem", "checkpoint_sha256": "a" * 64}
OTHER = {**KEY, "checkpoint_sha256": "b" * 64}
DETS = [{"segment": [1.0, 2.5], "score": 0.75, "label": 3}]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _fields(line: dict) -> dict:
    return {k: v for k, v in line.items() if k != "sha256"}


def _journal_with(tmp_path, rows, key=KEY):
    out = tmp_path / "r.json"
    with Journal.open(out, key) as j:
        j.append(rows)
    return out, journal_path(out)


def test_a_run_that_finishes_nothing_leaves_no_journal(tmp_path):
    out = tmp_path / "r.json"
    with Journal.open(out, KEY) as j:
        j.append([])
    assert list(tmp_path.iterdir()) == []


def test_header_then_one_line_per_video_and_resume(tmp_path):
    out, jp = _journal_with(tmp_path, [("a", DETS, [10, 5]), ("b", [], [11, 6])])
    lines = _lines(jp)
    assert lines[0] == {"mse_rt_journal": 2, "key": KEY}
    assert _fields(lines[1]) == {"video_id": "a", "detections": DETS, "source": [10, 5]}
    assert len(lines[1]["sha256"]) == 64
    assert lines[2]["video_id"] == "b" and len(lines) == 3
    with Journal.open(out, KEY) as j:
        assert j.done == {"a": DETS, "b": []}
        assert j.reusable("a", [10, 5])
        assert not j.reusable("a", [10, 6])  # the file changed since: run it again
        assert not j.reusable("a", None) and not j.reusable("c", [1, 1])
        j.append([("a", [], [10, 6])])  # the rerun's line wins
    assert read_journal(jp) == {"a": [], "b": []}


def test_another_run_key_is_refused_and_the_journal_kept(tmp_path):
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    before = _sha(jp)
    with pytest.raises(JournalError, match=r"another run \(checkpoint_sha256 aaaa.*bbbb.*remove the journal"):
        Journal.open(out, OTHER)
    assert _sha(jp) == before


def test_a_journal_already_written_out_is_started_afresh_for_another_key(tmp_path):
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    with Journal.open(out, KEY) as j:
        j.complete(out, ["a"], any_failed=True)  # a failed video: the journal stays, marked written
    assert _lines(jp)[-1] == {"written": "r.json"}
    with Journal.open(out, OTHER) as j:  # nothing in it is unsaved: the other run may start
        assert j.done == {}
    assert _lines(jp)[0]["key"] == KEY  # untouched until the new run finishes a video
    with Journal.open(out, OTHER) as j:
        j.append([("b", [], [3, 4])])
    lines = _lines(jp)
    assert lines[0] == {"mse_rt_journal": 2, "key": OTHER} and len(lines) == 2
    assert _fields(lines[1]) == {"video_id": "b", "detections": [], "source": [3, 4]}


def test_a_torn_last_line_is_cut_and_the_next_line_stays_readable(tmp_path):
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    with open(jp, "ab") as f:
        f.write(b'{"video_id": "b", "detec')  # the crash came in the middle of this write
    assert read_journal(jp) == {"a": DETS}
    with Journal.open(out, KEY) as j:
        assert j.done == {"a": DETS}
        j.append([("c", [], [5, 6])])
    assert read_journal(jp) == {"a": DETS, "c": []}


@pytest.mark.parametrize("damage", [b"garbage\n", b'{"video_id": 3, "detections": []}\n', b'{"video_id": "x"}\n',
                                    b'{"video_id": "x", "detections": [{"segment": [NaN, 1], "score": 1, "label": 0}]}\n'])
def test_a_damaged_line_is_refused(tmp_path, damage):
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    text = jp.read_bytes()
    jp.write_bytes(text + damage + b'{"video_id": "b", "detections": [], "source": null}\n')
    with pytest.raises(JournalError, match="damaged at line 3"):
        Journal.open(out, KEY)
    with pytest.raises(JournalError, match="damaged at line 3"):
        read_journal(jp)


def test_non_finite_detections_are_not_journaled(tmp_path):
    from mse_rt.errors import InputError

    out = tmp_path / "r.json"
    with Journal.open(out, KEY) as j, pytest.raises(InputError, match="non-finite"):
        j.append([("a", [{"segment": [float("inf"), 1.0], "score": 0.5, "label": 0}], [1, 2])])
    assert not journal_path(out).exists()


_INTERRUPT_DURING_APPEND = r"""
import json, signal, sys
from pathlib import Path
from mse_rt.io.journal import Journal, journal_path, read_journal
out, key, dets = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
real = Journal._write
def write_interrupted(self, text):
    real(self, text[:len(text) // 2])
    signal.raise_signal(signal.SIGINT)
    real(self, text[len(text) // 2:])
Journal._write = write_interrupted
raised = False
with Journal.open(out, key) as j:
    try:
        j.append([("a", dets, [1, 2])])
    except KeyboardInterrupt:
        raised = True
    state = {"raised": raised, "new": sorted(j.new), "done": j.done}
state["read"] = read_journal(journal_path(out))
state["handler_restored"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler
print(json.dumps(state))
"""


def test_an_interrupt_during_append_lands_after_it(tmp_path):
    """Ctrl-C (or SIGTERM through the CLI) in the middle of writing a line: the line is completed and
    counted, then the interrupt is raised. Run in a fresh interpreter: a test worker's signal state
    is not a CLI process's (an xdist worker died on the in-process form)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_DURING_APPEND, str(tmp_path / "r.json"), json.dumps(KEY),
                           json.dumps(DETS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"raised": True, "new": ["a"], "done": {"a": DETS}, "read": {"a": DETS}, "handler_restored": True}


def test_a_journal_without_header_is_refused(tmp_path):
    out = tmp_path / "r.json"
    journal_path(out).write_text(json.dumps({"video_id": "a", "detections": []}) + "\n")  # the old Ray format
    with pytest.raises(JournalError, match="no mse_rt journal header"):
        Journal.open(out, KEY)


def test_one_run_at_a_time(tmp_path):
    out = tmp_path / "r.json"
    with Journal.open(out, KEY), pytest.raises(JournalError, match="in use by another run"):
        Journal.open(out, KEY)
    with Journal.open(out, KEY):  # released
        pass


def test_complete_writes_only_when_a_video_succeeded(tmp_path):
    out = tmp_path / "r.json"
    out.write_text('{"results": {"old": []}}')
    before = _sha(out)
    with Journal.open(out, KEY) as j:
        s = j.complete(out, [], any_failed=True)
    assert s.output is None and _sha(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_full_disk_keeps_the_earlier_results_and_the_journal(tmp_path, monkeypatch):
    import errno
    import pathlib

    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    out.write_text('{"results": {"earlier": []}}')
    before_out, before_j = _sha(out), _sha(jp)
    real = pathlib.Path.write_bytes

    def half_then_enospc(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_enospc)
    with Journal.open(out, KEY) as j, pytest.raises(OutputError, match=f"No space left.*kept in {jp}.*rerun"):
        j.complete(out, ["a"], any_failed=False)
    monkeypatch.undo()
    assert _sha(out) == before_out and _sha(jp) == before_j
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.json.journal.jsonl"]


def test_complete_removes_the_journal_only_when_nothing_is_left_to_keep(tmp_path):
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2]), ("b", [], [3, 4])])
    with Journal.open(out, KEY) as j:  # 'b' is not among this run's inputs: it is in no results file
        s = j.complete(out, ["a"], any_failed=False)
    assert s.journal_kept and s.others == 1 and jp.exists()
    assert json.loads(out.read_text())["results"] == {"a": DETS}
    assert "written" not in _lines(jp)[-1]  # 'b' is unsaved: another key stays refused
    with pytest.raises(JournalError):
        Journal.open(out, OTHER)
    with Journal.open(out, KEY) as j:
        s = j.complete(out, ["b", "a"], any_failed=False)
    assert not s.journal_kept and not jp.exists()
    assert list(json.loads(out.read_text())["results"]) == ["b", "a"]  # the inputs' order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_complete_as_json_lines(tmp_path):
    out, _ = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    with Journal.open(out, KEY) as j:
        j.complete(out, ["a"], any_failed=False, jsonl=True)
    assert _lines(out) == [{"video_id": "a", "detections": DETS}]


def test_run_key_names_the_model_and_the_run(tmp_path):
    cfg, ckpt = GOLDEN / "thumos_small" / "config.yaml", GOLDEN / "thumos_small" / "ckpt.pth.tar"
    k = run_key(config=cfg, ckpt=ckpt, fps=30.0)
    assert k == run_key(config=str(cfg), ckpt=str(ckpt), fps=30.0)
    assert k["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    changed = tmp_path / "ckpt.pth.tar"
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 1
    changed.write_bytes(bytes(data))
    assert run_key(config=cfg, ckpt=changed, fps=30.0)["checkpoint_sha256"] != k["checkpoint_sha256"]
    other_cfg = tmp_path / "c.yaml"
    assert "voting_thresh: 0.7\n" in cfg.read_text()
    other_cfg.write_text(cfg.read_text().replace("voting_thresh: 0.7\n", "voting_thresh: 0.75\n"))
    assert run_key(config=other_cfg, ckpt=ckpt, fps=30.0)["config_sha256"] != k["config_sha256"]
    for change in ({"fps": 25.0}, {"ids": "relpath"}, {"backend": "onnxruntime"}):
        assert run_key(config=cfg, ckpt=ckpt, **{"fps": 30.0, **change}) != k
    m = tmp_path / "m.onnx"
    m.write_bytes(b"model bytes")
    assert run_key(model_file=m)["model_file_sha256"] == hashlib.sha256(b"model bytes").hexdigest()
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        run_key(config=cfg, ckpt=tmp_path / "missing.pth.tar")
    with pytest.raises(ModelFileError, match="cannot read model file"):
        run_key(model_file=tmp_path / "missing.onnx")


def test_run_key_of_a_factory_names_it_and_its_arguments():
    import functools

    a = run_key(factory=functools.partial(shutil.copy, "x.pth.tar"))
    b = run_key(factory=functools.partial(shutil.copy, "y.pth.tar"))
    assert "shutil.copy('x.pth.tar',)" in a["factory"] and a != b


def test_journal_path_checks(tmp_path):
    with pytest.raises(OutputError, match="named like a run journal"):
        check_journal_path(tmp_path / "r.json.journal.jsonl")
    journal_path(tmp_path / "d.json").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_journal_path(tmp_path / "d.json")
    feats = tmp_path / "x.json.journal.jsonl"
    feats.write_text("not ours")
    with pytest.raises(OutputError, match="one of the inputs"):
        check_journal_path(tmp_path / "x.json", [feats])
    assert check_journal_path(tmp_path / "ok.json") == tmp_path / "ok.json.journal.jsonl"


def test_file_stamp(tmp_path):
    p = tmp_path / "f.npy"
    p.write_bytes(b"12345")
    s = file_stamp(p)
    assert s[0] == 5 and s == file_stamp(p)
    assert file_stamp(tmp_path / "missing.npy") is None


def test_a_full_disk_on_append_is_one_error_not_a_chain(tmp_path):
    """The journal's own flush fails (ENOSPC) while appending: the OutputError naming the journal is
    the only error; closing the journal on the way out does not raise again (no chained OSError)."""
    import errno

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data=None):
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = write

        def __getattr__(self, name):
            return getattr(self.f, name)

    out = tmp_path / "r.json"
    with pytest.raises(OutputError, match="cannot write run journal .*No space left") as info:
        with Journal.open(out, KEY) as j:
            j._f = Full(j._f)
            j.append([("a", DETS, [1, 2])])
    assert isinstance(info.value.__cause__, OSError) and j._f is None  # closed, quietly


@pytest.mark.parametrize("edit", ["score", "segment", "drop_digest", "extra_field"])
def test_an_edited_line_is_refused_not_resumed(tmp_path, edit):
    """Every video line carries the sha256 of its fields: a hand-edited score or segment, a removed
    digest or an added field is damage (JournalError naming the line), never a result."""
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2]), ("b", DETS, [3, 4])])
    header, a, b = _lines(jp)
    if edit == "score":
        b["detections"][0]["score"] = 0.99
    elif edit == "segment":
        b["detections"][0]["segment"][1] += 1.0
    elif edit == "drop_digest":
        del b["sha256"]
    else:
        b["note"] = "x"
    jp.write_text("".join(json.dumps(x) + "\n" for x in (header, a, b)))
    with pytest.raises(JournalError, match=r"damaged at line 3 \(its checksum does not match"):
        Journal.open(out, KEY)
    with pytest.raises(JournalError, match="damaged at line 3"):
        read_journal(jp)


def test_lines_of_another_run_are_refused_not_mixed(tmp_path):
    """A video line's digest covers the run key: a line spliced in from another run's journal, or
    another run's lines under this run's header, is damage (the re-probe mixed an fps-15 run into
    a resumed default one that way)."""
    out, jp = _journal_with(tmp_path, [("a", DETS, [1, 2])])
    other_out = tmp_path / "o" / "r.json"
    other_out.parent.mkdir()
    _, other_jp = _journal_with(other_out.parent, [("b", DETS, [3, 4])], key=OTHER)
    header, own = _lines(jp)
    _, foreign = _lines(other_jp)
    jp.write_text("".join(json.dumps(x) + "\n" for x in (header, own, foreign)))  # spliced line
    with pytest.raises(JournalError, match=r"damaged at line 3 \(its checksum does not match: edited, corrupted or "
                                           r"from another run"):
        Journal.open(out, KEY)
    jp.write_text("".join(json.dumps(x) + "\n" for x in (header, foreign)))  # another run under this header
    with pytest.raises(JournalError, match="damaged at line 2"):
        Journal.open(out, KEY)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_linked_journal_is_refused_and_its_target_kept(tmp_path, link):
    """Appending through a symbolic or hard link would write the journal into the user's file."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"")
    out = tmp_path / "r.json"
    if link == "symbolic":
        journal_path(out).symlink_to(victim.name)
    else:
        os.link(victim, journal_path(out))
    with pytest.raises(JournalError, match="is a link to another file"):
        Journal.open(out, KEY)
    assert victim.read_bytes() == b"" and journal_path(out).exists()
