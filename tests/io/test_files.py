"""Crash-safe outputs: a failed write leaves the previous file whole, no temp files, normal permissions."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import numpy as np
import pytest

import mse_rt
from mse_rt import OutputError
from mse_rt.io.files import atomic_write_text, check_output_path


def _result(vid="v", n=3):
    return mse_rt.DetectionResult(vid, np.tile(np.array([[1.0, 2.0]], np.float32), (n, 1)),
                                  np.linspace(0.9, 0.1, n).astype(np.float32), np.zeros(n, np.int64), 30.0, 10.0)


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_full_disk_keeps_previous_results(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    mse_rt.write_results_json([_result("old")], out)
    before = out.read_bytes()
    real = pathlib.Path.write_bytes

    def half_then_enospc(self, data):  # what a full disk does: part of the data, then ENOSPC
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_enospc)
    with pytest.raises(OutputError, match="No space left"):
        mse_rt.write_results_json([_result("new", 50)], out)
    monkeypatch.undo()
    assert out.read_bytes() == before
    json.loads(out.read_text())  # still valid JSON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temp file left


def test_interrupt_during_write_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    atomic_write_text(out, "first")

    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(out, "second")
    monkeypatch.undo()
    assert out.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_outputs_get_normal_permissions(tmp_path):
    out = mse_rt.write_results_json([_result()], tmp_path / "r.json")
    assert (out.stat().st_mode & 0o777) == (0o666 & ~_umask())


def test_output_path_checks(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        check_output_path(blocker / "results.json")  # parent is a file: cannot be created
    assert check_output_path(tmp_path / "new" / "r.json").parent.is_dir()
    assert not any(p.name.endswith(".probe") for p in (tmp_path / "new").iterdir())


def test_an_output_that_is_an_input_is_refused(tmp_path):
    """The same file by its own path, through a symbolic link, a hard link and a relative path."""
    from mse_rt.io.files import check_not_an_input

    src = tmp_path / "feats.npy"
    src.write_bytes(b"x")
    (tmp_path / "sym.npy").symlink_to(src)
    os.link(src, tmp_path / "hard.npy")
    for out in (src, tmp_path / "sym.npy", tmp_path / "hard.npy", tmp_path / "." / "feats.npy"):
        with pytest.raises(OutputError, match="is one of the inputs"):
            check_not_an_input(out, [src, tmp_path / "other.npy"], what="results file")
    check_not_an_input(tmp_path / "new.json", [src])  # a new file: fine
    (tmp_path / "copy.npy").write_bytes(b"x")
    check_not_an_input(tmp_path / "copy.npy", [src])  # equal bytes, another file: fine
