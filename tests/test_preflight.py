"""The preflight list of issue 4: every check trips, end to end, with the exit code and a message
that names the node, the instance or the key.

Most run `pdwizard --sim SPEC --replay SESSION --dry-run` against the simulator (tests/simfiles:
the guide's p1 prefill on NPUs 0,1; d1 and d2 decode on 6,7); the comment above each test says
which module implements the check. Exit 2: the session is wrong (input); exit 1: a node's state.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from simfiles import guide_pair

from pdwizard.cli import main
from pdwizard.discovery import model_mla, uses_mla
from pdwizard.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK
from pdwizard.models import Session
from pdwizard.preflight import _profiles_for, _release, check_model, run_preflight
from pdwizard.report import ModelFacts, NodeFacts, Status
from pdwizard.sim import spec_from_dict

GUIDE_MODEL = "/model/Qwen3-30B-A3B"
PREFILL = {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700}
DECODE_D1 = {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700}
DECODE_D2 = {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700}


def run(tmp_path: Path, capsys, faults=None, **kw) -> tuple[int, dict | None, str]:
    """(exit code, report.json or None, stdout + stderr) of a dry run of the guide's pair."""
    spec, session = guide_pair(tmp_path, faults, **kw)
    out = tmp_path / "out"
    code = main(["--sim", str(spec), "--replay", str(session), "--dry-run", "--out", str(out)])
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    captured = capsys.readouterr()
    return code, report, captured.out + captured.err


def results(report: dict, check: str, status: str = "fail") -> list[dict]:
    return [r for s in report["steps"] for r in s["results"] if r["check"] == check and r["status"] == status]


def step(report: dict, name: str) -> dict:
    return next(s for s in report["steps"] if s["name"] == name)


def model(**extra) -> dict:
    return {"model": {"path": GUIDE_MODEL, "served_name": "qwen3-moe", **extra}}


# ---- the node ip is one of the node's own addresses ---------------------------------------------------
# pdwizard/nodechecks.py _check_ip (node state: exit 1)

def test_node_ip_not_own_address(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, {"d1": {"ip": "192.0.0.42"}})  # session says 192.0.0.2
    assert code == EXIT_FAILED
    [r] = results(report, "node_ip")
    assert r["node"] == "d1" and "192.0.0.2" in r["message"] and "192.0.0.42" in r["message"]
    assert "FAIL node_ip: node d1: session ip 192.0.0.2" in out


# ---- the nic exists on the node and holds that ip -----------------------------------------------------
# pdwizard/nodechecks.py _check_nic (exit 1)

@pytest.mark.parametrize("fault, fragment", [
    ({"nic": "enp1s0"}, "NIC eth0 does not exist on this node (it has enp1s0"),
    ({"ip": "192.0.0.42"}, "NIC eth0 does not hold 192.0.0.3"),
])
def test_nic_missing_or_without_the_ip(tmp_path, capsys, fault, fragment):
    code, report, out = run(tmp_path, capsys, {"d2": fault})
    assert code == EXIT_FAILED
    [r] = results(report, "nic")
    assert r["node"] == "d2" and fragment in r["message"]
    assert "node d2" in out


# ---- devices exist and are not held by another process (npu-smi) -------------------------------------
# exist: pdwizard/nodechecks.py missing_devices (input: exit 2); busy: nodechecks._check_npu (exit 1)

def test_device_the_node_lacks(tmp_path, capsys):
    code, _, out = run(tmp_path, capsys, {"p1": {"npus": 4}},
                       instances=[{**PREFILL, "devices": [0, 5]}, DECODE_D1, DECODE_D2])
    assert code == EXIT_INPUT
    assert "instances[0].devices: node p1 has no NPU 5 (it has: 0, 1, 2, 3)" in out


def test_device_held_by_another_process(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, {"d1": {"busy_npus": [7]}})
    assert code == EXIT_FAILED
    [r] = results(report, "free")
    assert (r["node"], r["device"]) == ("d1", 7) and "held by process" in r["message"]
    assert "node d1 NPU 7" in out


# ---- tensor_parallel_size equals the instance's device count ------------------------------------------
# pdwizard/models.py Instance._tp (input: exit 2, at load)

def test_tensor_parallel_size_not_the_device_count(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys,
                            instances=[{**PREFILL, "tensor_parallel_size": 4}, DECODE_D1, DECODE_D2])
    assert code == EXIT_INPUT and report is None  # refused before any connection
    assert "instances[0].tensor_parallel_size" in out and "does not match the 2 device(s)" in out


# ---- one port or kv_port used twice on a node --------------------------------------------------------
# port: pdwizard/models.py Session.problems; kv_port: pdwizard/render.py _check_kv_ports (exit 2, at load)

@pytest.mark.parametrize("second, stack, key, fragment", [
    ({"port": 13700}, {}, "instances[1].port", "port 13700 on node p1 is already used by instances[0]"),
    ({"port": 13701, "kv_port": 36000}, {"connector": "mooncake"}, "instances[1].kv_port",
     "overlaps instances[0]'s 36000..36001 on node p1"),
])
def test_port_or_kv_port_used_twice_on_a_node(tmp_path, capsys, second, stack, key, fragment):
    colocated = {"role": "decode", "node": "p1", "devices": [2, 3], **second}
    code, _, out = run(tmp_path, capsys, instances=[{**PREFILL, "kv_port": 36000}, colocated, DECODE_D1],
                       session_extra={"stack": stack})
    assert code == EXIT_INPUT
    assert key in out and fragment in out


# ---- model path missing on a node, or its config.json different between nodes -------------------------
# pdwizard/preflight.py check_model (node state: exit 1), probed by discovery (discovery_batch model_path)

def test_model_missing_on_a_node(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, {"d1": {"models": ["/model/other"]}})
    assert code == EXIT_FAILED
    [r] = results(report, "model")
    assert r["node"] == "d1" and r["message"] == f"no model directory {GUIDE_MODEL} on this node"
    assert f"FAIL model: node d1: no model directory {GUIDE_MODEL}" in out
    assert report["nodes"]["d1"]["model"]["present"] is False
    p1 = report["nodes"]["p1"]["model"]
    assert p1["present"] and p1["config"]["model_type"] == "qwen3_moe" and len(p1["config_sha256"]) == 64


def test_model_config_differs_between_nodes(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, {"d2": {"model_config": {"num_hidden_layers": 24}}})
    assert code == EXIT_FAILED
    [r] = results(report, "model_config")  # only the odd node fails
    assert r["node"] == "d2"
    assert "config.json differs from node p1's: keys differ: num_hidden_layers (p1: 48, here: 24)" in r["message"]
    assert GUIDE_MODEL in r["hint"]
    assert "FAIL model_config: node d2" in out


def test_hub_model_id_is_a_warning_not_a_failure(tmp_path, capsys):
    code, report, _ = run(tmp_path, capsys, session_extra={"model": {"path": "Qwen/Qwen3-30B-A3B"}})
    assert code == EXIT_OK
    assert {r["node"] for r in results(report, "model", "warn")} == {"p1", "d1", "d2"}


def test_model_probed_only_where_an_instance_runs(tmp_path, capsys):
    # d2 serves nothing here: it needs no model, and it is not probed
    code, report, _ = run(tmp_path, capsys, {"d2": {"models": []}}, instances=[PREFILL, DECODE_D1])
    assert code == EXIT_OK
    assert report["nodes"]["d2"]["model"] is None


# ---- prefill and decode on different profiles ---------------------------------------------------------
# pdwizard/preflight.py check_profile (exit 1); the nodes' agreement: nodechecks.check_versions

def test_installed_vllm_ascend_differs_from_the_profile(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, {"d1": {"vllm_ascend_version": "0.11.0"},
                                               "d2": {"vllm_ascend_version": "0.11.0"}})
    assert code == EXIT_FAILED
    fails = results(report, "profile")
    assert [r["node"] for r in fails] == ["d1", "d2"]
    assert fails[0]["message"] == ("vllm-ascend 0.11.0 is installed, but the session's profile "
                                   "vllm-ascend-0.10.1rc1 is for vllm-ascend 0.10.1rc1")
    assert "Install vllm-ascend 0.10.1rc1 on d1" in fails[0]["hint"]
    assert {r["node"] for r in results(report, "profile", "ok") if r["value"].startswith("vllm-ascend")} == {"p1"}
    assert any(r["check"] == "versions" for r in results(report, "versions"))  # prefill != decode
    assert "FAIL profile: node d1: vllm-ascend 0.11.0 is installed" in out


def test_installed_vllm_differs_from_the_profile(tmp_path, capsys):
    code, report, _ = run(tmp_path, capsys, {n: {"vllm_version": "0.11.0"} for n in ("p1", "d1", "d2")})
    assert code == EXIT_FAILED
    fails = results(report, "profile")
    assert {r["node"] for r in fails} == {"p1", "d1", "d2"}
    assert "vLLM 0.11.0 is installed, but vllm-ascend 0.10.1rc1" in fails[0]["message"]
    assert "built for vLLM 0.10.1.1" in fails[0]["message"]


def test_main_profile_accepts_any_release_with_a_warning(tmp_path, capsys):
    code, report, _ = run(tmp_path, capsys, {n: {"vllm_ascend_version": "0.12.0rc1"} for n in ("p1", "d1", "d2")},
                          session_extra={"stack": {"profile": "vllm-ascend-main"}})
    assert code == EXIT_OK
    [r] = results(report, "profile", "warn")
    assert "profile vllm-ascend-main names no release" in r["message"] and "p1=0.12.0rc1" in r["message"]


def test_profile_suggested_for_an_installed_release():
    assert _profiles_for("0.10.1rc1+g7e16b4a") == ["vllm-ascend-0.10.1rc1"]
    assert _release("v0.10.1rc1+empty") == "0.10.1rc1"


# ---- prefill and decode TP sizes the connector cannot pair -------------------------------------------
# LLMDataDist non-MLA equal, Mooncake (main) non-MLA multiple: pdwizard/preflight.py check_tp_pairing with
# the MLA test of pdwizard/discovery.py uses_mla (input: exit 2, after discovery);
# Mooncake prefill TP >= decode TP: pdwizard/render.py _plan (exit 2, at load)

WIDE_DECODES = [PREFILL, {**DECODE_D1, "devices": [4, 5, 6, 7]}, {**DECODE_D2, "devices": [4, 5, 6, 7]}]


def test_llmdatadist_non_mla_needs_equal_tp(tmp_path, capsys):
    code, report, out = run(tmp_path, capsys, instances=WIDE_DECODES)
    assert code == EXIT_INPUT
    fails = results(report, "tp_pairing")
    assert [r["node"] for r in fails] == ["d1", "d2"]
    assert "instances[1].tensor_parallel_size: decode d1:13700 has TP 4 but instances[0] (prefill p1:13700) " \
           "has TP 2" in out
    assert "non-MLA model (config.json model_type qwen3_moe" in fails[0]["message"]
    assert "fabric" not in [s["name"] for s in report["steps"]]  # stopped at the input error


def test_llmdatadist_mla_model_may_pair_different_tp(tmp_path, capsys):
    deepseek = {"model_type": "deepseek_v3"}
    eager = [PREFILL, *({**d, "enforce_eager": True} for d in WIDE_DECODES[1:])]
    code, report, _ = run(tmp_path, capsys, {n: deepseek for n in ("p1", "d1", "d2")}, instances=eager)
    assert code == EXIT_OK, results(report, "tp_pairing")
    [r] = results(report, "tp_pairing", "ok")
    assert "MLA model" in r["value"]
    notes = [r["message"] for r in step(report, "render")["results"] if r["status"] == "warn"]
    assert not any("tensor-parallel sizes differ" in n for n in notes)  # decided, not guessed


def test_unknown_model_type_keeps_the_warning(tmp_path, capsys):
    code, report, _ = run(tmp_path, capsys, {"d2": {"models": []}}, instances=WIDE_DECODES)
    assert code == EXIT_FAILED  # the missing model, not the TP pairing
    assert results(report, "tp_pairing") == [] and results(report, "tp_pairing", "ok") == []
    notes = [r["message"] for r in step(report, "render")["results"] if r["status"] == "warn"]
    assert any("tensor-parallel sizes differ" in n for n in notes)


def test_mooncake_decode_tp_above_prefill_tp(tmp_path, capsys):
    code, _, out = run(tmp_path, capsys, instances=WIDE_DECODES, session_extra={"stack": {"connector": "mooncake"}})
    assert code == EXIT_INPUT
    assert "instances[1].tensor_parallel_size: decode TP 4 is larger than the prefill TP 2" in out


def test_mooncake_main_non_mla_prefill_tp_multiple_of_decode_tp(tmp_path, capsys):
    instances = [{**PREFILL, "devices": [0, 1, 2, 3]}, {**DECODE_D1, "devices": [5, 6, 7]},
                 {**DECODE_D2, "devices": [5, 6, 7]}]
    code, report, out = run(tmp_path, capsys, instances=instances,
                            session_extra={"stack": {"profile": "vllm-ascend-main"}})
    assert code == EXIT_INPUT
    assert [r["node"] for r in results(report, "tp_pairing")] == ["d1", "d2"]
    assert "instances[1].tensor_parallel_size: decode d1:13700 has TP 3, which does not divide the TP 4" in out


# ---- RPC or kv port ranges of co-located instances overlapping; a Mooncake kv_port in the transfer ----
# ---- engine's range -----------------------------------------------------------------------------------
# pdwizard/render.py _plan (RPC ranges, also a lone instance's default range) and _check_kv_ports (exit 2)

@pytest.mark.parametrize("instances, extra, key, fragment", [
    ([PREFILL, {"role": "decode", "node": "p1", "devices": [2, 3], "port": 5558}, DECODE_D1], None,
     "instances[1].port", "VLLM_ASCEND_LLMDD_RPC_PORT 5557 gives instances[0] the RPC ports 5557..5558 on node p1"),
    ([PREFILL, DECODE_D1], {"proxy": {"port": 5558}},
     "proxy.port", "the default VLLM_ASCEND_LLMDD_RPC_PORT 5557 gives instances[0] the RPC ports 5557..5558"),
    ([{**PREFILL, "kv_port": 36000}, {"role": "decode", "node": "p1", "devices": [2, 3], "port": 13701,
                                      "kv_port": 36001}, DECODE_D1], {"stack": {"connector": "mooncake"}},
     "instances[1].kv_port", "kv_port range 36001..36002 overlaps instances[0]'s 36000..36001 on node p1"),
    ([{**PREFILL, "kv_port": "20001"}, DECODE_D1], {"stack": {"connector": "mooncake"}},
     "instances[0].kv_port", "overlaps 20000..35999, where the Ascend direct transport picks random ports"),
])
def test_port_ranges_overlapping(tmp_path, capsys, instances, extra, key, fragment):
    code, _, out = run(tmp_path, capsys, instances=instances, session_extra=extra)
    assert code == EXIT_INPUT
    assert f"{key}: " in out and fragment in out


# ---- a Mooncake deployment whose prefill and decode share an engine_id --------------------------------
# pdwizard/render.py _plan distinct_engine_ids (exit 2)

def test_mooncake_shared_engine_id(tmp_path, capsys):
    same = [{**i, "engine_id": "0"} for i in (PREFILL, DECODE_D1, DECODE_D2)]
    code, _, out = run(tmp_path, capsys, instances=same, session_extra={"stack": {"connector": "mooncake"}})
    assert code == EXIT_INPUT
    assert "instances[1].engine_id" in out and "Conflict engine id" in out


# ---- additional-config combinations vllm-ascend refuses at start-up ----------------------------------
# torchair sub-options: pdwizard/render.py _cross_checks with the profile's [additional_config.needs];
# eager with torchair and the Ascend scheduler's budget: render._cross_checks (exit 2, at load)

@pytest.mark.parametrize("model_extra, instances, key, fragment", [
    ({"additional_config": {"torchair_graph_config": {"enabled": False, "use_cached_graph": True}}}, None,
     "model.additional_config.torchair_graph_config.use_cached_graph",
     "is set while torchair_graph_config.enabled is not true"),
    ({}, [PREFILL, {**DECODE_D1, "additional_config": {"torchair_graph_config": {"graph_batch_sizes": [4]}}}],
     "instances[1].additional_config.torchair_graph_config.graph_batch_sizes",
     "is set while torchair_graph_config.enabled is not true"),
    ({"additional_config": {"torchair_graph_config": {"enabled": True, "use_cached_kv_cache_bytes": True}}},
     [{**PREFILL, "enforce_eager": False}, DECODE_D1],
     "model.additional_config.torchair_graph_config.use_cached_kv_cache_bytes",
     "is set while torchair_graph_config.use_cached_graph is not true"),
    ({"additional_config": {"torchair_graph_config": {"enabled": True}}}, None,
     "instances[0].enforce_eager", "Can't enable graph mode and eager mode at the same time"),
    ({"max_model_len": 8192, "max_num_batched_tokens": 4096}, None,
     "model.max_num_batched_tokens", "4096 < max_model_len 8192 with the Ascend scheduler on and chunked prefill off"),
])
def test_additional_config_refused_at_startup(tmp_path, capsys, model_extra, instances, key, fragment):
    code, _, out = run(tmp_path, capsys, instances=instances, session_extra=model(**model_extra))
    assert code == EXIT_INPUT
    assert f"{key}: " in out and fragment in out


# model-dependent start-up refusals, from config.json's model_type: pdwizard/preflight.py check_startup

def test_acl_graph_refused_for_deepseek_on_0_10_1rc1(tmp_path, capsys):
    deepseek = {"model_type": "deepseek_v3"}
    code, report, out = run(tmp_path, capsys, {n: deepseek for n in ("p1", "d1", "d2")})
    assert code == EXIT_INPUT
    assert [r["node"] for r in results(report, "startup")] == ["d1", "d2"]
    assert "instances[1].enforce_eager: decode d1:13700 runs in ACL graph mode" in out


def test_torchair_refused_for_an_unsupported_model_type(tmp_path, capsys):
    llama = {"model_type": "llama"}
    code, _, out = run(tmp_path, capsys, {n: llama for n in ("p1", "d1", "d2")},
                       instances=[{**PREFILL, "enforce_eager": False}, DECODE_D1],
                       session_extra=model(additional_config={"torchair_graph_config": {"enabled": True}}))
    assert code == EXIT_INPUT
    assert "model.additional_config.torchair_graph_config.enabled: prefill p1:13700 enables torchair" in out


# ---- pure parts ----------------------------------------------------------------------------------------


def test_uses_mla_reads_kv_lora_rank():
    assert uses_mla({"model_type": "deepseek_v3", "kv_lora_rank": 512})
    assert uses_mla({"model_type": "kimi_vl", "text_config": {"kv_lora_rank": 512}})
    assert not uses_mla({"model_type": "qwen3_moe", "num_key_value_heads": 4})
    assert not uses_mla({"model_type": "deepseek_v2", "kv_lora_rank": None})


def _session() -> Session:
    return Session.model_validate({
        "schema_version": 1, "name": "t",
        "nodes": [{"name": "p1", "host": "192.0.0.1", "nic": "eth0"}, {"name": "d1", "host": "192.0.0.2", "nic": "eth0"}],
        "instances": [PREFILL, DECODE_D1], "model": {"path": GUIDE_MODEL},
    })


def test_config_json_missing_or_not_json_fails():
    facts = {
        "p1": NodeFacts(node="p1", model=ModelFacts(path=GUIDE_MODEL, present=True)),
        "d1": NodeFacts(node="d1", model=ModelFacts(path=GUIDE_MODEL, present=True, config_sha256="a" * 64)),
    }
    by_node = {r.node: r for r in check_model(_session(), facts)}
    assert by_node["p1"].status is Status.FAIL and "has no readable config.json" in by_node["p1"].message
    assert by_node["d1"].status is Status.FAIL and "is not a JSON object" in by_node["d1"].message
    assert model_mla(_session(), facts) is None
    assert run_preflight(_session(), facts).input_errors == []


# ---- the simulator's seam ---------------------------------------------------------------------------


async def test_sim_node_files_live_under_its_root(sim_cluster_factory, sim_run):
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1", "models": ["/data/m"], "model_type": "qwen3",
                                                         "model_config": {"num_hidden_layers": 2}})
    p1 = await sim_run(cluster, "p1", f'cat "$PDWIZARD_SIM_ROOT{GUIDE_MODEL}/config.json"')
    assert json.loads(p1.stdout)["model_type"] == "qwen3_moe"
    d1 = await sim_run(cluster, "d1", 'cat "$PDWIZARD_SIM_ROOT/data/m/config.json"; ls "$PDWIZARD_SIM_ROOT"')
    assert '"num_hidden_layers": 2' in d1.stdout and '"model_type": "qwen3"' in d1.stdout
    assert d1.stdout.rstrip().endswith("data")  # only its own model
    assert cluster.node_path(cluster.node("d1"), "/data/m") == cluster.node("d1").root / "data" / "m"


@pytest.mark.parametrize("node, key", [
    ({"models": ["model/x"]}, "models"),
    ({"models": ["/a/../b"]}, "models"),
    ({"model_type": "qwen 3"}, "model_type"),
])
def test_sim_spec_model_keys_validated(node, key):
    from pdwizard.errors import InputError

    with pytest.raises(InputError) as exc:
        spec_from_dict({"node": [{"host": "127.0.3.1", **node}]})
    assert exc.value.key == f"node[0].{key}"


# ---- the profile keys these checks read ---------------------------------------------------------------


@pytest.mark.parametrize("old, new, fragment", [
    ('non_mla_tp = "equal"', 'non_mla_tp = "same"', "non_mla_tp: expected one of equal, multiple"),
    ('"torchair_graph_config.mode" = ["torchair_graph_config.enabled"]',
     '"torchair_graph_config.mode" = ["torchair_graph_config.enable"]',
     "needs.torchair_graph_config.mode: 'torchair_graph_config.enable' is not a listed key"),
    ('acl_graph_refused = ["deepseek"]', 'acl_graph_refused = "deepseek"', "startup.acl_graph_refused"),
])
def test_broken_preflight_profile_keys_refused(old, new, fragment):
    from importlib import resources

    from pdwizard.profiles import ProfileError, parse_profile

    text = resources.files("pdwizard.profiles").joinpath("vllm-ascend-0.10.1rc1.toml").read_text("utf-8")
    assert old in text
    with pytest.raises(ProfileError) as exc:
        parse_profile(text.replace(old, new, 1), source="x.toml")
    assert fragment in str(exc.value)
