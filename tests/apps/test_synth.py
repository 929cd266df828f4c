"""`mse-rt synth`: never writes a dataset over another one unless asked, and then leaves exactly the new
one; a file or an unwritable folder as --out is a one-line typed error."""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import pytest

from mse_rt.apps.synth import SyntheticSpec, write_dataset
from mse_rt.cli import main
from mse_rt.errors import InputError, OutputError
from mse_rt.io.dataset import read_dataset

SMALL = SyntheticSpec(min_len=20, max_len=30, channels=4)


def _tree(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_non_empty_folder_is_refused_and_left_as_it_was(tmp_path, capsys):
    ds = tmp_path / "ds"
    write_dataset(ds, 3, seed=1, spec=SMALL)
    before = _tree(ds)
    with pytest.raises(InputError, match=f"dataset folder {ds} is not empty.*--overwrite"):
        write_dataset(ds, 2, seed=2, spec=SMALL)
    assert main(["synth", "--out", str(ds), "--videos", "2", "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err
    assert _tree(ds) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")  # any file makes a folder non-empty
    with pytest.raises(InputError, match="is not empty"):
        write_dataset(other, 1, seed=0, spec=SMALL)


def test_overwrite_leaves_exactly_the_new_dataset(tmp_path):
    ds = tmp_path / "ds"
    write_dataset(ds, 4, seed=1, spec=SMALL)
    (ds / "notes.txt").write_text("mine")
    write_dataset(ds, 2, seed=2, spec=SMALL, overwrite=True)
    ann = json.loads((ds / "annotations.json").read_text())["database"]
    assert sorted(ann) == ["video_2_0000", "video_2_0001"]
    assert sorted(p.name for p in (ds / "features").iterdir()) == ["video_2_0000.npy", "video_2_0001.npy"]
    assert (ds / "notes.txt").read_text() == "mine"  # not part of a dataset: left alone
    fresh = write_dataset(tmp_path / "fresh", 2, seed=2, spec=SMALL)
    assert _tree(ds / "features") == _tree(fresh / "features")
    assert (ds / "annotations.json").read_bytes() == (fresh / "annotations.json").read_bytes()
    assert [v["video_id"] for v in read_dataset(ds)] == ["video_2_0000", "video_2_0001"]


def test_cli_overwrite_flag(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert main(["synth", "--out", str(ds), "--videos", "2", "--seed", "1"]) == 0
    assert main(["synth", "--out", str(ds), "--videos", "1", "--seed", "3", "--overwrite"]) == 0
    assert sorted(json.loads((ds / "annotations.json").read_text())["database"]) == ["video_3_0000"]
    assert [p.name for p in (ds / "features").iterdir()] == ["video_3_0000.npy"]


def test_an_interrupted_overwrite_leaves_no_mixed_dataset(tmp_path, monkeypatch):
    """The old annotations go first and the new ones come last: a folder with annotations.json holds one dataset."""
    ds = tmp_path / "ds"
    write_dataset(ds, 3, seed=1, spec=SMALL)
    real = np.save
    n = {"saved": 0}

    def save_then_stop(f, arr, *a, **k):
        if n["saved"] == 1:
            raise KeyboardInterrupt
        n["saved"] += 1
        return real(f, arr, *a, **k)

    monkeypatch.setattr(np, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(ds, 3, seed=2, spec=SMALL, overwrite=True)
    monkeypatch.undo()
    assert not (ds / "annotations.json").exists()
    with pytest.raises(InputError, match="no annotations.json"):
        read_dataset(ds)


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "data.txt"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        write_dataset(f, 1, seed=0, spec=SMALL)
    assert main(["synth", "--out", str(f), "--videos", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err and "Traceback" not in err
    assert f.read_text() == "x"
    with pytest.raises(OutputError, match="cannot write dataset folder"):  # a file where a parent folder should be
        write_dataset(f / "ds", 1, seed=0, spec=SMALL)


def test_an_unwritable_folder_is_a_typed_error(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = pathlib.Path.mkdir

    def read_only(self, *a, **k):  # what a read-only folder does (the tests may run as root, which chmod cannot stop)
        if self.parent == ro or self == ro:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    assert main(["synth", "--out", str(ro), "--videos", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write dataset folder {ro}: Permission denied" in err


def test_synth_video_renders_with_the_chosen_world(tmp_path, monkeypatch, capsys):
    """``synth --video`` hands the renderer the world asked for (the renderer itself is tested in
    tests/video/test_render.py; rendering real videos here would cost seconds each)."""
    import mse_rt.video.render as render
    from mse_rt.apps.pixel_demo import PIXEL_SPEC

    calls = []

    def fake_render(out, n, seed, **kw):
        calls.append((out, n, seed, kw))
        return pathlib.Path(out)

    monkeypatch.setattr(render, "render_dataset", fake_render)
    assert main(["synth", "--video", "--out", str(tmp_path / "a"), "--videos", "3", "--seed", "4"]) == 0
    assert main(["synth", "--video", "pixel-demo", "--out", str(tmp_path / "b"), "--videos", "2", "--seed", "5",
                 "--subset", "validation", "--workers", "2", "--overwrite"]) == 0
    (_, n1, s1, kw1), (_, n2, s2, kw2) = calls
    assert (n1, s1, n2, s2) == (3, 4, 2, 5)
    assert kw1["spec"] == render.VideoSynthSpec() and kw2["spec"] == PIXEL_SPEC
    assert kw2["subset"] == "validation" and kw2["workers"] == 2 and kw2["overwrite"] is True
    assert "rendered 2 videos" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["synth", "--video", "other", "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and "invalid choice: 'other'" in capsys.readouterr().err
