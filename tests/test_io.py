"""Atomic writes, per-profile results, corrupt files named in errors."""

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from repro import _io, profiles, store


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "result.json"
    _io.save_json({"a": 1}, target)
    with pytest.raises(RuntimeError):
        with _io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert _io.load_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_corrupt_json_and_checkpoint_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        _io.load_json(bad)
    ckpt = tmp_path / "model.pt"
    _io.save_checkpoint({"w": torch.arange(3)}, ckpt)
    assert torch.equal(_io.load_checkpoint(ckpt)["w"], torch.arange(3))
    ckpt.write_bytes(ckpt.read_bytes()[:20])
    with pytest.raises(ValueError, match="model.pt"):
        _io.load_checkpoint(ckpt)


def test_store_folder_per_profile_and_chapter(tmp_path, monkeypatch):
    smoke = profiles.get("smoke")
    assert store.Store(tmp_path / "r").folder(smoke, "toy1d") == tmp_path / "r" / "smoke" / "toy1d"
    assert (tmp_path / "r" / "smoke" / "toy1d").is_dir()
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "env"))  # the default store reads it when asked
    assert store.Store.resolve(None) == store.Store(tmp_path / "env")
    with pytest.raises(ValueError, match="profile must be a repro.profiles.Profile"):
        store.Store(tmp_path).folder("smoke", "toy1d")
    with pytest.raises(ValueError, match="profile must be one of"):
        store.Store(tmp_path).folder(dataclasses.replace(smoke, name="fast"), "toy1d")
    with pytest.raises(ValueError, match="store must be a repro.store.Store"):
        store.Store.resolve(str(tmp_path))
    with pytest.raises(ValueError, match="root must be a path"):
        store.Store(3)


def test_load_cached_rebuilds_missing_corrupt_and_invalid_entries(tmp_path):
    path = tmp_path / "entry.json"
    assert _io.load_cached(path) is None
    _io.save_json({"format": 1, "v": 2}, path)
    assert _io.load_cached(path, is_valid=lambda o: o.get("format") == 1) == {"format": 1, "v": 2}
    assert _io.load_cached(path, is_valid=lambda o: o.get("format") == 2) is None  # stale: rebuilt in place
    assert path.exists() and not (tmp_path / "entry.json.corrupt").exists()
    path.write_text('{"format": 1, "v"')
    with pytest.warns(UserWarning, match="entry.json is corrupt"):
        assert _io.load_cached(path) is None
    assert not path.exists() and (tmp_path / "entry.json.corrupt").exists()
    ckpt = tmp_path / "model.pt"
    _io.save_checkpoint({"w": torch.arange(3)}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:-30])
    with pytest.warns(UserWarning, match="model.pt is corrupt"):
        assert _io.load_cached(ckpt, loader=_io.load_checkpoint) is None
    assert not ckpt.exists()


def test_a_save_removes_the_temporaries_of_killed_writers_only(tmp_path):
    target = tmp_path / "model.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    host = _io._host_tag()
    killed = tmp_path / f".model.tmp.{dead.pid}.{host}.abc123.pt"
    alive = tmp_path / f".model.tmp.{os.getpid()}.{host}.def456.pt"  # a concurrent writer in a live process
    elsewhere = tmp_path / f".model.tmp.{dead.pid}.{'0' * 8 if host != '0' * 8 else '1' * 8}.ghi789.pt"
    other_file = tmp_path / f".model.tmp.{dead.pid}.{host}.jkl012.json"  # another target (model.json)
    unknown = tmp_path / ".model.tmp.oldstyle.pt"  # no pid: cannot tell whose
    for p in (killed, alive, elsewhere, other_file, unknown):
        p.write_bytes(b"partial")
    _io.save_checkpoint({"w": torch.ones(2)}, target)
    assert not killed.exists()
    assert all(p.exists() for p in (alive, elsewhere, other_file, unknown))
    assert torch.equal(_io.load_checkpoint(target)["w"], torch.ones(2))
    assert _io.remove_stale_temporaries(tmp_path / "missing" / "x.json") == []


def test_fingerprint_keys_tensors_files_and_json_values(tmp_path):
    from repro._io import fingerprint

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    key = fingerprint(x, {"b": 1, "a": [1, 2]}, 3)
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == fingerprint(x.double(), {"a": (1, 2), "b": 1}, 3)  # float64 values, sorted keys, tuples as lists
    different = [fingerprint(x.reshape(3, 2), {"b": 1, "a": [1, 2]}, 3),  # the shape counts
                 fingerprint(x + 1e-6, {"b": 1, "a": [1, 2]}, 3),
                 fingerprint(x, {"b": 1, "a": [1, 2]}, 4),
                 fingerprint({"b": 1, "a": [1, 2]}, x, 3)]  # and the order of the parts
    assert key not in different and len(set(different)) == len(different)
    assert fingerprint("12") != fingerprint("1", "2") and fingerprint([1], [2]) != fingerprint([1, 2])
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    assert fingerprint(path) != fingerprint(str(path))  # a Path is read, a string is a value
    before = fingerprint(path)
    path.write_bytes(b"other weights")
    assert fingerprint(path) != before
    with pytest.raises(ValueError, match="cannot fingerprint a object"):
        fingerprint(object())


def test_cached_computes_once_per_key_and_returns_what_it_reads_back(tmp_path):
    calls = []

    def compute():
        calls.append(len(calls))
        return {"curve": (1.5, 2.5)}

    path = tmp_path / "result.json"
    first = _io.cached(path, {"n": 1}, compute)
    assert first == {"curve": [1.5, 2.5]}  # as read back from JSON, also on the first call
    assert _io.cached(path, {"n": 1}, compute) == first and calls == [0]
    assert _io.cached(path, {"n": 2}, compute) == first and calls == [0, 1]  # another key: recomputed
    assert _io.load_json(path) == {"key": {"n": 2}, "value": first}
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        assert _io.cached(path, {"n": 2}, compute) == first
    assert calls == [0, 1, 2] and (tmp_path / "result.json.corrupt").exists()


def test_cached_tensors_in_a_checkpoint_and_nothing_written_when_compute_fails(tmp_path):
    def compute():
        return {"x": torch.arange(3.0)}

    value = _io.cached(tmp_path / "t.pt", "k", compute, _io.load_checkpoint, _io.save_checkpoint)
    assert torch.equal(value["x"], torch.arange(3.0))

    def fail():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        _io.cached(tmp_path / "other.json", "k", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]


def test_entries_resume_per_name_and_key_and_set_aside_another_format(tmp_path):
    path = tmp_path / "runs.json"
    runs = _io.Entries(path, "test/1")
    assert runs.entries == {} and runs.get("a", 1) is None and not path.exists()
    runs.put("a", 1, {"score": 0.5})
    runs.put("b", (1, "x"), {"score": 0.7})
    again = _io.Entries(path, "test/1")  # as a resumed run reads it
    assert again.get("a", 1) == {"score": 0.5, "key": 1}
    assert again.get("a", 2) is None  # computed for another key: to be recomputed
    assert again.get("b", (1, "x")) == {"score": 0.7, "key": [1, "x"]}  # a tuple key as its JSON list
    with pytest.warns(UserWarning, match="not of format test/2"):
        assert _io.Entries(path, "test/2").entries == {}
    assert (tmp_path / "runs.json.stale").exists() and not path.exists()
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        assert _io.Entries(path, "test/1").entries == {}


def test_training_checkpoint_resumes_its_own_run_only(tmp_path):
    path = tmp_path / "run.pt"
    mine = _io.TrainingCheckpoint(path, {"seed": 0, "sizes": (3, 4)})
    assert mine.load() is None  # nothing saved yet
    mine.save(5, [{"step": 5, "loss": 0.5}], model={"w": torch.ones(2)}, optimizer={})
    state = mine.load()
    assert state["step"] == 5 and torch.equal(state["model"]["w"], torch.ones(2))
    assert _io.load_json(tmp_path / "run.json") == {"run": {"seed": 0, "sizes": [3, 4]}, "step": 5,
                                                    "history": [{"step": 5, "loss": 0.5}]}
    other = _io.TrainingCheckpoint(path, {"seed": 1, "sizes": (3, 4)})
    with pytest.raises(ValueError, match="run.pt was written for another run"):
        other.load()
    with pytest.warns(UserWarning, match="other settings"):
        assert other.load(other_run="aside") is None
    assert (tmp_path / "run.pt.stale").exists() and not path.exists()
    _io.save_checkpoint({"run": {"seed": 0, "sizes": (3, 4)}, "step": 1}, path)  # no model, no optimiser
    with pytest.warns(UserWarning, match="not a training checkpoint"):
        assert mine.load() is None
    nowhere = _io.TrainingCheckpoint(None, {"seed": 0})
    nowhere.save(1, [], model={})
    assert nowhere.load() is None and sorted(p.name for p in tmp_path.iterdir()) == [
        "run.json", "run.pt.corrupt", "run.pt.stale"]
