"""A run folder's files between the driver and a node without a shared filesystem
(experiments/core/run_files.py): every file a job wrote travels, in an order a crash cannot
break, and never the driver's lock or error.txt."""

import os
from pathlib import Path

import pytest

from experiments.core.config import ConfigError
from experiments.core.run_files import (Sent, Storage, absolute, reaches, snapshot, transport,
                                        write_files)


def write(folder, files):
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def test_every_file_of_the_job_travels_but_the_drivers_own_and_temporary_ones(tmp_path):
    write(tmp_path, {"metrics.jsonl": b"{}\n", "checkpoint.pt": b"w", "attacks/pgd.csv": b"x",
                     "lock": b"{}", "lock.break": b"", "error.txt": b"tb",
                     ".metrics.jsonl.abc": b"half", "attacks/.pgd.csv.x": b"half"})
    assert snapshot(tmp_path) == {"attacks/pgd.csv": b"x", "checkpoint.pt": b"w",
                                  "metrics.jsonl": b"{}\n"}


def test_changed_sends_what_was_written_since_the_last_time_only(tmp_path):
    write(tmp_path, {"config.yaml": b"a", "checkpoint.pt": b"1"})
    sent = Sent(tmp_path)  # the folder as the driver sent it: nothing to send back yet
    assert sent.changed() == {}
    write(tmp_path, {"checkpoint.pt": b"22", "units.csv": b"u"})
    assert sent.changed() == {"checkpoint.pt": b"22", "units.csv": b"u"}
    assert sent.changed() == {}
    (tmp_path / "checkpoint.pt").write_bytes(b"33")  # same size, newer: sent again
    os.utime(tmp_path / "checkpoint.pt", ns=(1, 10**18))
    assert sent.changed() == {"checkpoint.pt": b"33"}


def test_records_are_written_before_checkpoints_and_done_last(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr("experiments.core.run_files.atomic_write",
                        lambda path, data: order.append(path.name))
    write_files(tmp_path, {"done": b"", "checkpoint.pt": b"", "metrics.jsonl": b"",
                           "best.pt": b""})
    assert order == ["metrics.jsonl", "best.pt", "checkpoint.pt", "done"]


@pytest.mark.parametrize("name", ["../elsewhere", "lock", "a/../../b"])
def test_a_file_outside_the_folder_or_the_drivers_lock_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="not a run folder's file"):
        write_files(tmp_path / "run", {name: b""})


def test_storage_carries_each_batch_once_and_leaves_nothing_behind(tmp_path):
    storage = Storage(str(tmp_path / "store"))
    files = {"metrics.jsonl": b"1\n", "attacks/fgsm.csv": b"c"}
    first, second = storage.send("exp/net/seed-1", files), storage.send("exp/net/seed-1", {})
    assert storage.receive("exp/net/seed-1", first) == files
    assert storage.receive("exp/net/seed-1", second) == {}
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_an_unknown_storage_protocol_is_one_line():
    with pytest.raises(ConfigError, match="--storage nosuch://bucket: .*nosuch"):
        transport("nosuch://bucket").send("key", {"a": b""})


def test_a_storage_marker_is_seen_while_it_lasts_and_paths_are_made_absolute(tmp_path):
    with Storage(str(tmp_path / "store")).marker() as uri:
        assert reaches(uri) and not reaches(uri + "-other")
    assert not reaches(uri) and not reaches("nosuch://bucket/file")
    assert absolute("transfer") == str(Path("transfer").resolve())
    assert [absolute(s) for s in ("objects", "s3://b/p")] == ["objects", "s3://b/p"]
