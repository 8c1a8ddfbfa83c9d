"""Command rendering: the guide side by side, both profiles, refusals, co-located instances."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest

from pdwizard.errors import EXIT_INPUT, InputError
from pdwizard.render import discovery_inputs, render_all, render_instance, render_problems, render_proxy
from pdwizard.session import SessionError, load_session, validate_session

REPO = Path(__file__).resolve().parents[1]
QWEN = REPO / "examples" / "qwen3-1p2d.toml"
GUIDE_DIR = Path(__file__).parent / "fixtures" / "guide"
SEED_GUIDE = REPO.parent / "shared" / "seed" / "pd-disaggregation-qwen-guide.md"
GUIDE_RANKTABLE = "/path/to/your/generated/ranktable.json"
GUIDE_FILES = ["prefill-p1.txt", "decode-d1.txt", "decode-d2.txt"]


# ---- parsing the guide's shell text -------------------------------------------------------------


def parse_guide(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(exports in order, argv) of one of the guide's blocks, parsed as the shell would."""
    tokens = shlex.split(text.replace("\\\n", " "), comments=True)
    env, i = [], 0
    while tokens[i] == "export":
        name, _, value = tokens[i + 1].partition("=")
        env.append((name, value))
        i += 2
    return env, tokens[i:]


def _norm(value: str):
    return json.loads(value) if value.startswith("{") else value


def split_flags(argv: list[str]) -> tuple[list[str], list[tuple[str, tuple]]]:
    """(leading positional words, [(flag, values)]) with JSON values parsed by json.loads."""
    i, head = 0, []
    while i < len(argv) and not argv[i].startswith("--"):
        head.append(argv[i])
        i += 1
    flags = []
    while i < len(argv):
        flag, i, values = argv[i], i + 1, []
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(_norm(argv[i]))
            i += 1
        flags.append((flag, tuple(values)))
    return head, flags


def as_set(flags: list[tuple[str, tuple]]) -> set[tuple[str, str]]:
    return {(f, json.dumps(v, sort_keys=True)) for f, v in flags}


def json_arg(argv: list[str], flag: str) -> dict:
    assert argv.count(flag) == 1, flag
    return json.loads(argv[argv.index(flag) + 1])


@pytest.fixture(scope="module")
def guide_session():
    return load_session(QWEN)


def guide_block(name: str) -> tuple[list[tuple[str, str]], list[str]]:
    return parse_guide((GUIDE_DIR / name).read_text())


# ---- the guide, side by side ---------------------------------------------------------------------


def test_fixtures_are_the_guides_text_verbatim():
    if not SEED_GUIDE.exists():
        pytest.skip("the seed guide is not next to the repository")
    guide = SEED_GUIDE.read_text()
    for name in [*GUIDE_FILES, "proxy.txt"]:
        assert (GUIDE_DIR / name).read_text() in guide, name


def test_parser_reads_the_guide_as_a_shell_does():
    env, argv = guide_block("prefill-p1.txt")
    assert env[0] == ("HCCL_IF_IP", "192.0.0.1") and env[1] == ("GLOO_SOCKET_IFNAME", "eth0")
    assert argv[:3] == ["vllm", "serve", "/model/Qwen3-30B-A3B"] and argv[-1] == "--enforce-eager"
    assert json_arg(argv, "--kv-transfer-config")["kv_port"] == "20001"


@pytest.mark.parametrize("index, name", list(enumerate(GUIDE_FILES)))
def test_guide_instances_side_by_side(guide_session, index, name):
    g_env, g_argv = guide_block(name)
    r = render_instance(guide_session, index, ranktable_path=GUIDE_RANKTABLE)

    # environment: the guide's exports, in the guide's order, plus only the additions
    guide_names = [k for k, _ in g_env]
    assert [(k, v) for k, v in r.env if k in guide_names] == g_env
    added = [k for k, _ in r.env if k not in guide_names]
    assert added == ["ASCEND_RT_VISIBLE_DEVICES"]
    assert r.env_dict["ASCEND_RT_VISIBLE_DEVICES"] == ("0,1" if index == 0 else "6,7")
    assert set(r.comments) == set(added) and all(r.comments.values())

    # argv: the same positional words and the same (flag, value) set; the JSON objects equal
    g_head, g_flags = split_flags(g_argv)
    r_head, r_flags = split_flags(r.argv)
    assert r_head == g_head == ["vllm", "serve", "/model/Qwen3-30B-A3B"]
    assert as_set(r_flags) == as_set(g_flags)
    assert len(r_flags) == len(g_flags)  # no flag twice
    for flag in ("--kv-transfer-config", "--additional-config"):
        assert json_arg(r.argv, flag) == json_arg(g_argv, flag)
    assert json_arg(r.argv, "--kv-transfer-config")["kv_port"] == "20001"  # a string, as the guide
    assert ("--enforce-eager", ()) in r_flags if index == 0 else ("--enforce-eager", ()) not in r_flags


def test_prefill_keeps_the_guides_flag_order(guide_session):
    _, g_flags = split_flags(guide_block("prefill-p1.txt")[1])
    _, r_flags = split_flags(render_instance(guide_session, 0, ranktable_path=GUIDE_RANKTABLE).argv)
    assert r_flags == g_flags


def test_guide_proxy_side_by_side(guide_session):
    _, g_argv = parse_guide((GUIDE_DIR / "proxy.txt").read_text())
    proxy = render_proxy(guide_session)
    # argparse accepts unambiguous prefixes: the guide's --prefiller-port is --prefiller-ports
    from pdwizard.render import profile_for

    known = list(profile_for(guide_session)[0].proxy_flags)

    def resolve(flag: str) -> str:
        matches = [k for k in known if k.startswith(flag)]
        return flag if flag in known else matches[0] if len(matches) == 1 else flag

    g_head, g_flags = split_flags(g_argv)
    r_head, r_flags = split_flags(proxy.argv)
    assert r_head == g_head == ["python", "load_balance_proxy_server_example.py"]
    assert r_flags == [(resolve(f), v) for f, v in g_flags]
    assert "--prefiller-ports" in proxy.comments and proxy.node == "p1"


def test_guide_notes_report_the_keys_without_effect(guide_session):
    d = render_all(guide_session)
    text = "\n".join(d.notes)
    for key in ("kv_port", "kv_buffer_device", "kv_parallel_size", "kv_connector_module_path",
                "torchair_graph_config.enable_multistream_shared_expert"):
        assert f" {key} has no effect" in text, key
    assert "engine_id has no effect" not in text  # echoed to the proxy: it has an effect
    assert [r.script_name for r in d.instances] == ["p1-prefill-0.sh", "d1-decode-0.sh", "d2-decode-0.sh"]


def test_default_ranktable_path_is_per_session(guide_session):
    r = render_instance(guide_session, 1)
    assert r.env_dict["DISAGGREGATED_PREFILL_RANK_TABLE_PATH"] == "~/.pdwizard/runs/qwen3-1p2d/ranktable.json"


# ---- sessions built here ------------------------------------------------------------------------------


def base() -> dict:
    return {
        "schema_version": 1,
        "name": "t",
        "nodes": [
            {"name": "p1", "host": "192.0.0.1", "nic": "eth0"},
            {"name": "d1", "host": "192.0.0.2", "nic": "eth1"},
        ],
        "instances": [
            {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
            {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
        ],
        "model": {"path": "/model/Qwen3-30B-A3B"},
    }


def session(mutate=None, **stack):
    data = base()
    if stack:
        data["stack"] = stack
    if mutate:
        mutate(data)
    return validate_session(data)


def problems(s, **kw) -> SessionError:
    with pytest.raises(SessionError) as exc:
        render_all(s, **kw)
    err = exc.value
    assert isinstance(err, InputError) and err.exit_code == EXIT_INPUT
    return err


def one_problem(s, key: str, *fragments: str) -> InputError:
    err = problems(s)
    matching = [p for p in err.problems if p.key == key]
    assert matching, (key, err.keys, str(err))
    for fragment in fragments:
        assert fragment in str(matching[0]), (fragment, str(matching[0]))
    assert matching[0].hint
    return matching[0]


def test_defaults_render_the_guides_model_settings():
    r = render_instance(session(), 0)
    _, flags = split_flags(r.argv)
    d = dict(flags)
    assert d["--max-model-len"] == ("6144",) and d["--max-num-batched-tokens"] == ("6144",)
    assert d["--seed"] == ("1024",) and d["--gpu-memory-utilization"] == ("0.9",)
    assert "--no-enable-prefix-caching" in d and "--enable-prefix-caching" not in d
    assert "--trust-remote-code" not in d and "--enable-expert-parallel" not in d  # opt-in
    assert d["--served-model-name"] == ("Qwen3-30B-A3B",)
    # the guide's additional-config without its no-op key
    assert r.additional_config == {"torchair_graph_config": {"enabled": False},
                                   "ascend_scheduler_config": {"enabled": True, "enable_chunked_prefill": False}}
    assert r.env_dict["GLOO_SOCKET_IFNAME"] == "eth0"
    assert render_instance(session(), 1).env_dict["HCCL_SOCKET_IFNAME"] == "eth1"


def test_model_settings_reach_the_flags():
    def mutate(d):
        d["model"].update(max_model_len=8192, max_num_batched_tokens=8192, gpu_memory_utilization=0.85,
                          seed=7, trust_remote_code=True, enable_prefix_caching=True, served_name="q")
        d["instances"][1]["enforce_eager"] = True
        d["instances"][0]["enforce_eager"] = False
    r0, r1 = render_all(session(mutate)).instances
    d0 = dict(split_flags(r0.argv)[1])
    assert d0["--max-model-len"] == ("8192",) and d0["--gpu-memory-utilization"] == ("0.85",)
    assert d0["--seed"] == ("7",) and "--trust-remote-code" in d0 and "--enable-prefix-caching" in d0
    assert "--no-enable-prefix-caching" not in d0 and d0["--served-model-name"] == ("q",)
    assert "--enforce-eager" not in d0 and "--enforce-eager" in r1.argv


# ---- both profiles ---------------------------------------------------------------------------------------


def test_mooncake_on_main():
    s = session(profile="vllm-ascend-main")
    d = render_all(s)
    kv = [r.kv_transfer_config for r in d.instances]
    assert kv[0] == {
        "kv_connector": "MooncakeConnectorV1", "kv_role": "kv_producer", "kv_port": 36000, "engine_id": "0",
        "kv_connector_module_path": "vllm_ascend.distributed.kv_transfer.kv_p2p.mooncake_connector",
        "kv_connector_extra_config": {"prefill": {"tp_size": 2, "dp_size": 1}, "decode": {"tp_size": 2, "dp_size": 1}},
    }
    assert kv[1]["kv_role"] == "kv_consumer" and kv[1]["engine_id"] == "1"
    assert kv[1]["kv_connector_extra_config"] == kv[0]["kv_connector_extra_config"]
    assert json_arg(d.instances[0].argv, "--kv-transfer-config") == kv[0]
    env = d.instances[1].env_dict
    assert "DISAGGREGATED_PREFILL_RANK_TABLE_PATH" not in env  # Mooncake needs no ranktable
    assert env["PHYSICAL_DEVICES"] == "6,7" and env["ASCEND_RT_VISIBLE_DEVICES"] == "6,7"
    assert "PHYSICAL_DEVICES" in d.instances[1].comments


def test_mooncake_offered_by_0_10_1rc1_uses_that_release_module():
    d = render_all(session(connector="mooncake"))
    assert d.connector.id == "mooncake"
    assert d.instances[0].kv_transfer_config["kv_connector_module_path"] == "vllm_ascend.distributed.mooncake_connector"
    assert d.instances[0].kv_transfer_config["kv_connector_extra_config"]["prefill"] == {"tp_size": 2, "dp_size": 1}


def test_llmdatadist_default_on_0_10_1rc1():
    d = render_all(session())
    assert d.profile.name == "vllm-ascend-0.10.1rc1" and d.connector.id == "llmdatadist"
    assert d.instances[0].kv_transfer_config["kv_connector"] == "LLMDataDistCMgrConnector"
    assert "kv_connector_extra_config" not in d.instances[0].kv_transfer_config


def test_same_key_accepted_by_one_profile_refused_or_inert_in_the_other():
    def prefetch(d):
        d["model"]["additional_config"] = {"weight_prefetch_config": {"enabled": True}}
    render_all(session(prefetch, profile="vllm-ascend-main"))  # v0.11.0+ key
    one_problem(session(prefetch), "model.additional_config.weight_prefetch_config",
                "unknown --additional-config key 'weight_prefetch_config' for vllm-ascend-0.10.1rc1")

    def old(d):
        d["model"]["additional_config"] = {"enable_prefetch": True, "torchair_graph_config": {"enable_multistream_moe": False}}
    assert not [n for n in render_all(session(old)).notes if "enable_prefetch" in n]
    notes = "\n".join(render_all(session(old, profile="vllm-ascend-main")).notes)
    assert "enable_prefetch has no effect" in notes and "enable_multistream_moe has no effect" in notes


def test_extra_args_checked_per_profile():
    def seqs(d):
        d["model"]["extra_args"] = ["--max-num-seqs", "16"]
    assert render_instance(session(seqs), 0).argv[-2:] == ["--max-num-seqs", "16"]
    one_problem(session(seqs, profile="vllm-ascend-main"), "model.extra_args[0]",
                "unknown flag '--max-num-seqs' for vllm-ascend-main")


def test_main_profile_offers_no_llmdatadist():
    with pytest.raises(SessionError) as exc:
        session(profile="vllm-ascend-main", connector="llmdatadist")
    assert exc.value.keys == ["stack.connector"] and "it offers: mooncake" in str(exc.value)


# ---- refusals: unknown keys and flags, with the closest valid one ---------------------------------------


@pytest.mark.parametrize("table, key, best", [
    ({"torchair_graph_config": {"enabeld": False}}, "torchair_graph_config.enabeld", "enabled"),
    ({"ascend_scheduler": {"enabled": True}}, "ascend_scheduler", "ascend_scheduler_config"),
    ({"ascend_scheduler_config": {"enabled": True, "max_num_seq": 8}}, "ascend_scheduler_config.max_num_seq",
     "max_num_seqs"),
])
def test_unknown_additional_config_key_refused_with_closest(table, key, best):
    def mutate(d):
        d["model"]["additional_config"] = table
    p = one_problem(session(mutate), f"model.additional_config.{key}", f"did you mean '{best}'")
    assert "vllm-ascend-0.10.1rc1" in str(p)


def test_unknown_key_in_an_instance_override_names_the_instance():
    def mutate(d):
        d["instances"][1]["additional_config"] = {"torchair_graph_config": {"graph_batch_size": [4]}}
    one_problem(session(mutate), "instances[1].additional_config.torchair_graph_config.graph_batch_size",
                "did you mean 'graph_batch_sizes'")


def test_instance_override_merges_table_by_table():
    def mutate(d):
        d["instances"][1]["additional_config"] = {"ascend_scheduler_config": {"max_num_seqs": 8}}
    r0, r1 = render_all(session(mutate)).instances
    assert r1.additional_config["ascend_scheduler_config"] == {"enabled": True, "enable_chunked_prefill": False,
                                                               "max_num_seqs": 8}
    assert r1.additional_config["torchair_graph_config"] == {"enabled": False}
    assert "max_num_seqs" not in r0.additional_config["ascend_scheduler_config"]


def test_table_key_given_a_value_and_value_key_given_a_table():
    def mutate(d):
        d["model"]["additional_config"] = {"torchair_graph_config": True, "refresh": {"x": 1}}
    err = problems(session(mutate))
    assert "model.additional_config.torchair_graph_config" in err.keys and "is a table" in str(err)
    assert "model.additional_config.refresh" in err.keys and "single value" in str(err)


def test_gated_table_reports_keys_without_effect():
    def mutate(d):
        d["model"]["additional_config"] = {"ascend_scheduler_config": {"enabled": False, "max_num_seqs": 4}}
    assert any("max_num_seqs) have no effect" in n for n in render_all(session(mutate)).notes)


@pytest.mark.parametrize("args, index, fragment", [
    (["--max-num-seq", "16"], 0, "did you mean '--max-num-seqs'"),
    (["--port", "1"], 0, "port in [[instances]]"),
    (["--additional-config", "{}"], 0, "additional_config in [model]"),
    (["--max-num-seqs"], 0, "needs a value"),
    (["--trust-remote-code"], 0, "trust_remote_code in [model]"),
    (["--block-size", "128", "16"], 2, "is not a flag"),
    (["--additional-config.refresh", "true"], 0, "dotted form"),
    (["--max-num-seqs", "8", "--max-num-seqs", "9"], 2, "given twice"),
    (["-tp", "2"], 0, "is not a flag"),
])
def test_extra_args_refused_naming_the_element(args, index, fragment):
    def mutate(d):
        d["model"]["extra_args"] = args
    one_problem(session(mutate), f"model.extra_args[{index}]", fragment)


def test_extra_args_instance_overrides_model_and_equals_form_kept():
    def mutate(d):
        d["model"]["extra_args"] = ["--max-num-seqs", "16", "--block-size=128"]
        d["instances"][1]["extra_args"] = ["--max-num-seqs", "4"]
    r0, r1 = render_all(session(mutate)).instances
    assert r0.argv[-3:] == ["--max-num-seqs", "16", "--block-size=128"]
    assert r1.argv[-3:] == ["--block-size=128", "--max-num-seqs", "4"]
    assert r1.argv.count("--max-num-seqs") == 1


def test_extra_args_problem_in_an_instance_names_it():
    def mutate(d):
        d["instances"][1]["extra_args"] = ["--enforce-eager"]
    one_problem(session(mutate), "instances[1].extra_args[0]", "enforce_eager in [[instances]]")


def test_every_problem_reported_at_once():
    def mutate(d):
        d["model"]["extra_args"] = ["--nope"]
        d["model"]["additional_config"] = {"torchair_graph_confg": {}}
        d["nodes"][1].pop("nic")
    err = problems(session(mutate))
    assert {"model.extra_args[0]", "model.additional_config.torchair_graph_confg", "nodes[1].nic"} <= set(err.keys)
    assert len(err.keys) == len(set(err.keys))  # model-level problems once, not once per instance


# ---- start-up rules caught before launch ----------------------------------------------------------------


def test_torchair_with_eager_refused():
    def mutate(d):
        d["model"]["additional_config"] = {"torchair_graph_config": {"enabled": True}}
    one_problem(session(mutate), "instances[0].enforce_eager", "graph mode and eager mode")
    mutate_ok = (lambda d: (mutate(d), d["instances"][0].update(enforce_eager=False)))
    render_all(session(mutate_ok))


def test_batched_tokens_below_model_len_refused_with_the_ascend_scheduler():
    def mutate(d):
        d["model"].update(max_model_len=8192, max_num_batched_tokens=4096)
    one_problem(session(mutate), "model.max_num_batched_tokens", "4096 < max_model_len 8192")

    def chunked(d):
        mutate(d)
        d["model"]["additional_config"] = {"ascend_scheduler_config": {"enabled": True, "enable_chunked_prefill": True}}
    render_all(session(chunked))


# ---- node ip and nic ------------------------------------------------------------------------------------


def test_nic_from_discovery_only_when_the_session_has_none():
    def mutate(d):
        d["nodes"][1].pop("nic")
    s = session(mutate)
    one_problem(s, "nodes[1].nic", "network card of node d1 is unknown")
    r = render_instance(s, 1, nic="enp1s0")
    assert r.env_dict["GLOO_SOCKET_IFNAME"] == r.env_dict["TP_SOCKET_IFNAME"] == "enp1s0"
    assert render_instance(session(), 1, nic="enp1s0").env_dict["HCCL_SOCKET_IFNAME"] == "eth1"  # session wins


def test_node_ip_prefers_session_ip_then_discovery_then_host():
    def mutate(d):
        d["nodes"][1].update(host="d1.lab", ip="192.0.0.2")
    s = session(mutate)
    assert render_instance(s, 1, node_ip="10.9.9.9").env_dict["HCCL_IF_IP"] == "192.0.0.2"
    assert render_instance(session(), 1, node_ip="10.9.9.9").env_dict["HCCL_IF_IP"] == "10.9.9.9"
    assert render_instance(session(), 1).env_dict["HCCL_IF_IP"] == "192.0.0.2"
    assert render_proxy(session(), node_ips={"d1": "10.9.9.9"}).argv[-4:] == [
        "--decoder-hosts", "10.9.9.9", "--decoder-ports", "13700"]


def test_loopback_hccl_ip_refused_on_several_nodes():
    def mutate(d):
        d["nodes"][0]["host"] = "127.0.0.1"
    one_problem(session(mutate), "nodes[0].ip", "loopback")


# ---- several instances on one node ------------------------------------------------------------------------


def colocated(d):
    d["instances"] = [
        {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
        {"role": "decode", "node": "p1", "devices": [2, 3], "port": 13701},
        {"role": "decode", "node": "p1", "devices": [4, 5], "port": 13702},
        {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
    ]


def test_colocated_llmdatadist_instances_get_distinct_rpc_bases_and_devices():
    d = render_all(session(colocated))
    env = [r.env_dict for r in d.instances]
    assert [e.get("VLLM_ASCEND_LLMDD_RPC_PORT") for e in env] == ["5557", "5657", "5757", None]
    assert [e["ASCEND_RT_VISIBLE_DEVICES"] for e in env] == ["0,1", "2,3", "4,5", "6,7"]
    assert "3 instances share node p1" in d.instances[1].comments["VLLM_ASCEND_LLMDD_RPC_PORT"]
    assert "VLLM_ASCEND_LLMDD_RPC_PORT" not in d.instances[3].comments
    assert [r.script_name for r in d.instances] == [
        "p1-prefill-0.sh", "p1-decode-0.sh", "p1-decode-1.sh", "d1-decode-0.sh"]
    # the RPC base is the one addition; the guide's variables are all still there
    assert [k for k, _ in d.instances[1].env][-2:] == ["ASCEND_RT_VISIBLE_DEVICES", "VLLM_ASCEND_LLMDD_RPC_PORT"]


def test_rpc_ports_colliding_with_an_http_port_refused():
    def mutate(d):
        colocated(d)
        d["instances"][2]["port"] = 5658  # inside instances[1]'s RPC range 5657..5658
    one_problem(session(mutate), "instances[2].port", "5657..5658")


def test_colocated_mooncake_instances_get_disjoint_kv_ports_and_engine_ids():
    d = render_all(session(colocated, profile="vllm-ascend-main"))
    kv = [r.kv_transfer_config for r in d.instances]
    assert [k["kv_port"] for k in kv] == [36000, 36100, 36200, 36000]
    assert [k["engine_id"] for k in kv] == ["0", "1", "2", "3"]
    assert all("VLLM_ASCEND_LLMDD_RPC_PORT" not in r.env_dict for r in d.instances)


def test_mooncake_kv_port_overlap_refused():
    def mutate(d):
        colocated(d)
        d["instances"][1]["kv_port"] = 36001  # 36001..36002 overlaps the prefill's 36000..36001
    one_problem(session(mutate, profile="vllm-ascend-main"), "instances[1].kv_port", "overlaps instances[0]")


def test_mooncake_kv_port_in_the_transport_range_refused():
    def mutate(d):
        d["instances"][0]["kv_port"] = "20001"  # the guide's value
    one_problem(session(mutate, connector="mooncake"), "instances[0].kv_port", "20000..35999", "random ports")
    # with the NPU count from discovery the range is smaller
    def fine(d):
        d["instances"][0]["kv_port"] = 30000
    render_all(session(fine, connector="mooncake"), npus_per_node={"p1": 8, "d1": 8})
    one_problem(session(fine, connector="mooncake"), "instances[0].kv_port", "16 NPUs assumed")


def test_mooncake_equal_engine_ids_refused_llmdatadist_fine():
    def mutate(d):
        for inst in d["instances"]:
            inst["engine_id"] = "0"  # the guide's value on every instance
    render_all(session(mutate))
    one_problem(session(mutate, connector="mooncake"), "instances[1].engine_id", "Conflict engine id")


def test_engine_id_and_kv_port_as_given():
    def mutate(d):
        d["instances"][0].update(engine_id="p-0", kv_port=36500)
    kv = render_instance(session(mutate, connector="mooncake"), 0).kv_transfer_config
    assert kv["engine_id"] == "p-0" and kv["kv_port"] == 36500 and isinstance(kv["kv_port"], int)


def test_mooncake_decode_tp_larger_than_prefill_refused():
    def mutate(d):
        d["instances"][1]["devices"] = [4, 5, 6, 7]
    one_problem(session(mutate, connector="mooncake"), "instances[1].tensor_parallel_size", "prefill tp_size >= decode")
    notes = render_all(session(mutate)).notes  # LLMDataDist: a warning for non-MLA models
    assert any("tensor-parallel sizes differ" in n for n in notes)


def test_render_instance_index_checked():
    with pytest.raises(IndexError):
        render_instance(session(), 5)


def test_session_is_not_mutated_by_rendering():
    s = session(colocated)
    before = copy.deepcopy(s.model_dump())
    render_all(s)
    assert s.model_dump() == before


# ---- hooks for the headless flow ------------------------------------------------------------------


def test_render_problems_needs_no_discovery():
    def no_nic(d):
        d["nodes"][1].pop("nic")
    assert render_problems(session(no_nic)) == []

    def bad(d):
        no_nic(d)
        d["model"]["extra_args"] = ["--nope"]
    found = render_problems(session(bad), source="s.toml")
    assert [p.key for p in found] == ["model.extra_args[0]"] and str(found[0]).startswith("s.toml: ")


def test_discovery_inputs_fill_missing_nics_and_npu_counts():
    from pdwizard.report import NodeFacts, NpuFacts

    def no_nic(d):
        d["nodes"][1].pop("nic")
    s = session(no_nic)
    facts = {
        "p1": NodeFacts(node="p1", nics={"eth9": ["192.0.0.1"]}, npus=[NpuFacts(device=i, npu_id=i) for i in range(8)]),
        "d1": NodeFacts(node="d1", nics={"lo": ["127.0.0.1"], "enp2": ["192.0.0.2"]}),
    }
    kw = discovery_inputs(s, facts)
    # p1's nic comes from the session; no model probed: its type (MLA or not) is unknown
    assert kw == {"nics": {"d1": "enp2"}, "npus_per_node": {"p1": 8}, "model_mla": None}
    assert render_instance(s, 1, nic=kw["nics"]["d1"]).env_dict["GLOO_SOCKET_IFNAME"] == "enp2"
    assert render_all(s, **kw).instances[0].env_dict["GLOO_SOCKET_IFNAME"] == "eth0"
