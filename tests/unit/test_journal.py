"""The run journal survives a torn last line and lists runs newest first."""

from fleetctl.services.journal import Journal, list_runs, read_journal


def test_append_read_and_torn_tail(tmp_path):
    j = Journal(str(tmp_path), "20261122T080000Z-aaaaaa")
    j.append("run_started", profile="next")
    j.append("step", host="gpu-01", step="drain", phase="begin")
    j.close()
    with open(j.path, "a") as f:
        f.write('{"schema": "fleetctl.journal/v1", "event": "st')  # killed mid-write
    records = read_journal(j.path)
    assert [r["event"] for r in records] == ["run_started", "step"]
    assert records[1]["host"] == "gpu-01" and records[0]["run_id"] == "20261122T080000Z-aaaaaa"


def test_runs_newest_first(tmp_path):
    for run_id in ("20261122T080000Z-aaaaaa", "20261122T090000Z-bbbbbb"):
        j = Journal(str(tmp_path), run_id)
        j.append("run_started")
        j.close()
    assert [run for run, _ in list_runs(str(tmp_path))] == ["20261122T090000Z-bbbbbb", "20261122T080000Z-aaaaaa"]
    assert list(list_runs(str(tmp_path / "nothing"))) == []
