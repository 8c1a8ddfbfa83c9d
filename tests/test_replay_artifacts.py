"""What the headless run produces: the ranktable and the scripts under --out, and the
ranktable pushed to every instance node when the run goes past --dry-run."""

from __future__ import annotations

import hashlib
import json
import subprocess

from simfiles import guide_pair

from pdwizard.cli import main

GUIDE_RANKTABLE = "tests/fixtures/ranktable/a-1p2d-guide/ranktable.json"


def test_dry_run_out_writes_ranktable_scripts_and_report(tmp_path, capsys):
    spec, session = guide_pair(tmp_path)
    out = tmp_path / "out"
    assert main(["--sim", str(spec), "--replay", str(session), "--dry-run", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["d1-decode-0.sh", "d2-decode-0.sh", "p1-prefill-0.sh", "proxy.sh",
                     "ranktable.json", "report.json"]
    table = json.loads((out / "ranktable.json").read_text())
    assert [s["server_id"] for s in table["prefill_device_list"]] == ["192.0.0.1", "192.0.0.1"]
    assert {s["server_id"] for s in table["decode_device_list"]} == {"192.0.0.2", "192.0.0.3"}
    assert table["server_count"] == "3"
    for script in out.glob("*.sh"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    p1 = (out / "p1-prefill-0.sh").read_text()
    assert "HCCL_IF_IP=192.0.0.1" in p1 and "kv_producer" in p1
    report = json.loads((out / "report.json").read_text())
    assert "render" in [s["name"] for s in report["steps"]]
    assert "ranktable" not in [s["name"] for s in report["steps"]]  # dry run: nothing uploaded


def test_guide_ranktable_equals_the_generators_file(tmp_path):
    """The sim's NPU IPs are the reference example's (29.0.<node>.<device+1>), so what the
    run discovers and writes must be the upstream generator's file, byte for byte."""
    spec, session = guide_pair(tmp_path)
    out = tmp_path / "out"
    assert main(["--sim", str(spec), "--replay", str(session), "--dry-run", "--out", str(out)]) == 0
    assert (out / "ranktable.json").read_bytes() == open(GUIDE_RANKTABLE, "rb").read()


def test_run_past_dry_run_uploads_identical_ranktables(tmp_path, capsys):
    spec, session = guide_pair(tmp_path)
    out = tmp_path / "out"
    assert main(["--sim", str(spec), "--replay", str(session), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    uploaded = next(s for s in report["steps"] if s["name"] == "ranktable")["results"]
    assert {r["node"] for r in uploaded} == {"p1", "d1", "d2"}
    sent = hashlib.sha256((out / "ranktable.json").read_bytes()).hexdigest()
    assert {r["value"] for r in uploaded} == {sent}
    assert all(r["target"].endswith(".pdwizard/runs/test-1p2d/ranktable.json") for r in uploaded)


def test_render_problem_is_input_error_before_any_ssh(tmp_path, capsys):
    spec, session = guide_pair(tmp_path, session_extra={"model": {
        "path": "/model/x", "extra_args": ["--no-such-flag"]}})
    code = main(["--sim", str(spec), "--replay", str(session), "--dry-run"])
    assert code == 2
    err = capsys.readouterr().err
    assert "model.extra_args[0]" in err and "--no-such-flag" in err
