"""tfvae.base.atomic: whole files or none, no clobbering without overwrite, no debris on failure."""

import json
import os
from pathlib import Path

import pytest

from tfvae.base import atomic


def test_write_json_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / "sub" / "m.json"
    atomic.write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert os.listdir(path.parent) == ["m.json"]


def test_refuses_existing_file_without_overwrite(tmp_path):
    path = tmp_path / "f.txt"
    atomic.write_text(path, "old")
    with pytest.raises(FileExistsError, match="f.txt"):
        atomic.write_text(path, "new", overwrite=False)
    assert path.read_text() == "old"
    atomic.write_text(path, "new")
    assert path.read_text() == "new"


def test_failed_writer_keeps_old_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    atomic.write_bytes(path, b"old")

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic.write_with(path, broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_staged_dir_publishes_only_on_success(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(ValueError):
        with atomic.staged_dir(target) as tmp:
            (open(os.path.join(tmp, "a"), "w")).close()
            raise ValueError("boom")
    assert os.listdir(tmp_path) == []
    with atomic.staged_dir(target) as tmp:
        with open(os.path.join(tmp, "a"), "w") as f:
            f.write("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic.staged_dir(target) as tmp:
            pass
    with atomic.staged_dir(target, overwrite=True) as tmp:
        with open(os.path.join(tmp, "b"), "w") as f:
            f.write("2")
    assert sorted(os.listdir(target)) == ["b"]
    assert os.listdir(tmp_path) == ["model"]


def test_publish_dir_refuses_target_that_appeared(tmp_path):
    src, target = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "x").write_text("new")
    target.mkdir()
    (target / "y").write_text("other writer")
    with pytest.raises(FileExistsError):
        atomic.publish_dir(src, target)
    assert (target / "y").read_text() == "other writer"


def test_published_files_and_dirs_have_the_usual_modes(tmp_path):
    """Readable by others as with open()/mkdir() (mkstemp alone would make them owner-only)."""
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "f", "x")
        with atomic.staged_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_remove_stale_temps_keeps_young_ones_when_asked(tmp_path):
    young = tmp_path / ".m.json.tmp-young"
    young.write_text("a write in progress")
    atomic.remove_stale_temps(tmp_path / "m.json", older_than=60)
    assert young.exists()


def test_remove_stale_temps(tmp_path):
    path = tmp_path / "m.json"
    (tmp_path / ".m.json.tmp-abc").write_text("debris")
    (tmp_path / ".m.json.tmp-dir").mkdir()
    (tmp_path / "keep").write_text("k")
    atomic.remove_stale_temps(path)
    assert os.listdir(tmp_path) == ["keep"]


def test_exchange_swaps_two_directories_in_one_step(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new").write_text("n")
    (b / "old").write_text("o")
    if not atomic.exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert os.listdir(b) == ["new"] and os.listdir(a) == ["old"]


def test_publish_dir_over_a_target_without_exchange_moves_it_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)  # an OS without it
    target = tmp_path / "run"
    target.mkdir()
    (target / "old").write_text("o")
    with atomic.staged_dir(target, overwrite=True) as tmp:
        (Path(tmp) / "new").write_text("n")
    assert os.listdir(target) == ["new"] and os.listdir(tmp_path) == ["run"]
