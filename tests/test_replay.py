"""The headless flow end to end, over real SSH against the simulator.

Every fault the simulator can inject must give exit 1 and name the node and the
NPU; every bad session exit 2 naming the key; a healthy cluster exit 0 with a
report that holds the raw output behind each verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdwizard.cli import main
from simfiles import guide_pair

REPO = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, faults=None, extra_args=(), **kw) -> tuple[int, dict | None]:
    spec, session = guide_pair(tmp_path, faults, **kw)
    out = tmp_path / "out"
    code = main(["--sim", str(spec), "--replay", str(session), "--dry-run", "--out", str(out),
                 *extra_args])
    report_path = out / "report.json"
    return code, json.loads(report_path.read_text()) if report_path.exists() else None


def failures(report: dict) -> list[dict]:
    return [r for s in report["steps"] for r in s["results"] if r["status"] == "fail"]


def test_healthy_cluster_passes_with_full_report(tmp_path, capsys):
    code, report = run(tmp_path)
    assert code == 0, capsys.readouterr().out
    assert report["simulated"] is True
    assert [s["name"] for s in report["steps"]] == ["connect", "discovery", "node", "preflight",
                                                     "fabric", "render"]
    p1 = report["nodes"]["p1"]
    assert p1["soc"] == "A2" and len(p1["npus"]) == 8
    assert p1["packages"]["vllm"] == "0.10.1.1"
    fabric = next(s for s in report["steps"] if s["name"] == "fabric")
    link = [r for r in fabric["results"] if r["check"] == "link" and r["node"] == "d1"]
    assert {r["device"] for r in link} == {6, 7}
    assert all(r["raw"].startswith("link status: UP") for r in link)
    pings = [r for r in fabric["results"] if r["check"] == "ping"]
    # full matrix of the guide: p1 2 NPUs x 4 peers, d1 and d2 2 x 4 each
    assert len(pings) == 24 and all(r["status"] == "ok" for r in pings)
    out = capsys.readouterr().out
    assert "ping matrix: 24 pings" in out and "(exit 0)" in out
    # the guide's own config: keys the connector ignores are reported, not failed
    assert "WARN render: --kv-transfer-config kv_buffer_device has no effect" in out


@pytest.mark.parametrize("node,fault,check,device", [
    ("d1", {"link_down": [6]}, "link", 6),
    ("p1", {"unhealthy": [1]}, "net_health", 1),
    ("d2", {"no_lldp": [7]}, "lldp", 7),
    ("d2", {"hccn_conf_stale": [6]}, "hccn_conf", 6),
    ("p1", {"no_ip": [0]}, "ip", 0),
    ("d1", {"npu_health": {"7": "Alarm"}}, "health", 7),
    ("d1", {"busy_npus": [6]}, "free", 6),
])
def test_each_npu_fault_fails_naming_node_and_npu(tmp_path, capsys, node, fault, check, device):
    code, report = run(tmp_path, {node: fault})
    assert code == 1
    named = [r for r in failures(report) if r["check"] == check]
    assert named and named[0]["node"] == node and named[0]["device"] == device
    assert named[0]["hint"]
    out = capsys.readouterr().out
    assert f"node {node} NPU {device}" in out


def test_ping_loss_names_source_and_target(tmp_path):
    code, report = run(tmp_path, {"d1": {"ping_loss": ["29.0.1.1"]}})
    assert code == 1
    lost = [r for r in failures(report) if r["check"] == "ping"]
    assert lost and all(r["node"] == "d1" and "29.0.1.1" in r["target"] for r in lost)
    assert {r["device"] for r in lost} == {6, 7}


def test_tls_mismatch_fails_on_the_odd_node(tmp_path):
    code, report = run(tmp_path, {"d2": {"tls": 1}})
    assert code == 1
    odd = [r for r in failures(report) if r["check"] == "tls"]
    assert {r["node"] for r in odd} == {"d2"}


def test_versions_differ_fails(tmp_path):
    code, report = run(tmp_path, {"d2": {"vllm_ascend_version": "0.11.0"}})
    assert code == 1
    assert any(r["check"] == "versions" and "vllm-ascend" in r["message"] for r in failures(report))


def test_unreachable_node_fails_others_still_checked(tmp_path, capsys):
    code, report = run(tmp_path, {"d2": {"unreachable": True}})
    assert code == 1
    ssh = [r for r in failures(report) if r["check"] == "ssh"]
    assert [r["node"] for r in ssh] == ["d2"] and "refused" in ssh[0]["value"]
    assert set(report["nodes"]) == {"p1", "d1"}
    assert "node d2" in capsys.readouterr().out


def test_warnings_do_not_fail(tmp_path):
    code, report = run(tmp_path, {"p1": {"netdetect_unset": [0], "no_gateway": [1]}})
    assert code == 0
    warns = {(r["check"], r["device"]) for s in report["steps"] for r in s["results"]
             if r["status"] == "warn"}
    assert {("netdetect", 0), ("net_health", 0), ("gateway", 1)} <= warns


def test_busy_tool_is_retried_not_a_fault(tmp_path):
    code, report = run(tmp_path, {"p1": {"busy_first": 2}})
    assert code == 0, failures(report)


def test_device_the_node_lacks_is_input_error(tmp_path, capsys):
    code, _ = run(tmp_path, instances=[
        {"role": "prefill", "node": "p1", "devices": [0, 9], "port": 13700},
        {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
    ])
    assert code == 2
    assert "instances[0].devices" in capsys.readouterr().out


def test_session_node_missing_from_spec_is_input_error(tmp_path, capsys):
    spec, session = guide_pair(tmp_path)
    text = session.read_text().replace('host = "127.', 'host = "127.250.', 1)
    session.write_text(text)
    code = main(["--sim", str(spec), "--replay", str(session), "--dry-run"])
    assert code == 2
    assert "nodes" in capsys.readouterr().err


def test_verbose_logs_every_remote_command(tmp_path, capsys):
    code, _ = run(tmp_path, extra_args=["--verbose"])
    assert code == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "exit 0 in" in l]
    assert {l.split("]")[0].strip("[") for l in lines} >= {"p1", "d1", "d2"}


def test_cli_subprocess_plain_output_and_exit_code(tmp_path):
    spec, session = guide_pair(tmp_path, {"d1": {"link_down": [7]}})
    proc = subprocess.run([sys.executable, "-m", "pdwizard", "--sim", str(spec), "--replay",
                           str(session), "--dry-run", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "[d1]" in proc.stdout and "FAIL link: node d1 NPU 7" in proc.stdout
    assert (tmp_path / "o" / "report.json").exists()


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["--replay", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2
