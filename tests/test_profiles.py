"""Version profiles: shipped data pinned to the reference, strict loading, session keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from pdwizard.errors import InputError
from pdwizard.profiles import (
    KeySet,
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
)
from pdwizard.session import SessionError, validate_session

REPO = Path(__file__).resolve().parents[1]
PROFILE_DIR = REPO / "pdwizard" / "profiles"
OLD, MAIN = "vllm-ascend-0.10.1rc1", "vllm-ascend-main"

# additional-config-keys.md, "Quick allow-lists for a command renderer"
ACK_TOP_0101 = {"torchair_graph_config", "ascend_scheduler_config", "expert_map_path", "chunked_prefill_for_mla",
                "enable_shared_expert_dp", "enable_prefetch", "lmhead_tensor_parallel_size", "refresh",
                "kv_cache_dtype"}
ACK_TORCHAIR_0101 = {"enabled", "mode", "use_cached_graph", "use_cached_kv_cache_bytes", "graph_batch_sizes",
                     "graph_batch_sizes_init", "enable_multistream_mla", "enable_multistream_moe",
                     "enable_view_optimize", "enable_kv_nz"}
ACK_SCHED_FIELDS_0101 = {"runner_type", "max_num_batched_tokens", "max_num_seqs", "max_model_len",
                         "max_num_partial_prefills", "max_long_partial_prefills", "long_prefill_token_threshold",
                         "num_lookahead_slots", "cuda_graph_sizes", "delay_factor", "enable_chunked_prefill",
                         "is_multimodal_model", "preemption_mode", "send_delta_data", "policy",
                         "disable_chunked_mm_input", "scheduler_cls", "disable_hybrid_kv_cache_manager",
                         "async_scheduling", "num_scheduler_steps"}
ACK_TOP_0110 = (ACK_TOP_0101 - {"enable_prefetch"}) | {
    "weight_prefetch_config", "eplb_policy_type", "expert_map_record_path", "init_redundancy_expert", "dynamic_eplb",
    "num_iterations_eplb_update", "gate_eplb", "num_wait_worker_iterations", "multistream_overlap_shared_expert",
    "recompute_scheduler_enable", "oproj_tensor_parallel_size", "enable_cpu_binding"}
ACK_TORCHAIR_0110 = (ACK_TORCHAIR_0101 - {"enable_multistream_moe"}) | {"enable_frozen_parameter", "enable_super_kernel"}
ACK_SCHED_0110 = {"enabled", "enable_pd_transfer", "decode_max_num_seqs"} | (
    ACK_SCHED_FIELDS_0101 - {"delay_factor", "preemption_mode", "num_scheduler_steps"})
# llmdatadist-connector.md §2: vLLM 0.10.1.1 KVTransferConfig "has exactly 11 fields"
KV_FIELDS_0101 = {"kv_connector", "engine_id", "kv_buffer_device", "kv_buffer_size", "kv_role", "kv_rank",
                  "kv_parallel_size", "kv_ip", "kv_port", "kv_connector_extra_config", "kv_connector_module_path"}
GUIDE_FLAGS = {"--host", "--port", "--tensor-parallel-size", "--no-enable-prefix-caching", "--seed",
               "--served-model-name", "--max-model-len", "--max-num-batched-tokens", "--trust-remote-code",
               "--gpu-memory-utilization", "--enable-expert-parallel", "--kv-transfer-config",
               "--additional-config", "--enforce-eager"}


def test_shipped_profiles_load_and_are_named_after_their_file():
    assert available_profiles() == (OLD, MAIN)
    files = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
    assert list(available_profiles()) == files
    for name in files:
        assert load_profile(name).name == name


def test_old_profile_matches_the_reference():
    p = load_profile(OLD)
    assert (p.vllm_ascend, p.vllm, p.default_connector) == ("0.10.1rc1", "0.10.1.1", "llmdatadist")
    ack = p.additional_config
    assert set(ack.children("")) == ACK_TOP_0101
    assert set(ack.children("torchair_graph_config")) == ACK_TORCHAIR_0101 | {"enable_multistream_shared_expert"}
    assert "torchair_graph_config.enable_multistream_shared_expert" in ack.inert
    assert set(ack.children("ascend_scheduler_config")) == ACK_SCHED_FIELDS_0101 | {"enabled"}
    assert set(p.kv_transfer_config.keys) == KV_FIELDS_0101
    assert GUIDE_FLAGS <= set(p.serve_flags)
    assert set(p.connectors) == {"llmdatadist", "mooncake"}
    ll, mc = p.connectors["llmdatadist"], p.connectors["mooncake"]
    assert (ll.kv_connector, ll.module_path) == ("LLMDataDistCMgrConnector",
                                                  "vllm_ascend.distributed.llmdatadist_c_mgr_connector")
    assert ll.needs_ranktable and ll.rpc_port_env == "VLLM_ASCEND_LLMDD_RPC_PORT" and ll.rpc_port_base == 5557
    assert set(ll.inert) == {"kv_buffer_device", "kv_buffer_size", "kv_rank", "kv_parallel_size", "kv_ip", "kv_port",
                             "kv_connector_extra_config", "kv_connector_module_path"}
    assert dict(ll.defaults) == {"kv_buffer_device": "npu", "kv_parallel_size": 1, "kv_port": "20001", "engine_id": "0"}
    assert (mc.kv_connector, mc.module_path) == ("MooncakeConnectorV1", "vllm_ascend.distributed.mooncake_connector")
    assert not mc.needs_ranktable and mc.distinct_engine_ids and mc.prefill_tp_ge_decode_tp
    assert set(p.proxy_flags) == {"--host", "--port", "--prefiller-hosts", "--prefiller-ports", "--decoder-hosts",
                                  "--decoder-ports", "--max-retries", "--retry-delay"}


def test_main_profile_matches_the_reference():
    p = load_profile(MAIN)
    assert list(p.connectors) == ["mooncake"]  # LLMDataDist was deleted on main
    mc = p.connectors["mooncake"]
    assert mc.module_path == "vllm_ascend.distributed.kv_transfer.kv_p2p.mooncake_connector"
    ack = p.additional_config
    assert set(ack.children("")) == ACK_TOP_0110 | {"enable_prefetch"}
    assert set(ack.keys) >= {f"torchair_graph_config.{k}" for k in ACK_TORCHAIR_0110}
    assert "torchair_graph_config.enable_multistream_moe" in ack.inert and "enable_prefetch" in ack.inert
    assert {k for k in ack.children("ascend_scheduler_config") if f"ascend_scheduler_config.{k}" in ack.keys} \
        == ACK_SCHED_0110
    assert {"--max-waiting-retries", "--waiting-retry-interval", "--workers", "--log-level"} <= set(p.proxy_flags)
    assert "weight_prefetch_config.prefetch_ratio.*" in ack.keys  # a free-form dict


_CITE = re.compile(r"#.*\b(LLMDD|ACK|PROXY|GUIDE|SILENT)\b")


@pytest.mark.parametrize("name", [OLD, MAIN])
def test_every_serve_flag_and_connector_fact_cites_its_source(name):
    lines = (PROFILE_DIR / f"{name}.toml").read_text().splitlines()
    section = ""
    uncited = []
    for line in lines:
        if line.startswith("["):
            section = line.split("]")[0] + "]"
            continue
        if section == "[serve.flags]" and line.startswith('"--'):
            if not _CITE.search(line):
                uncited.append(line)
        if section.startswith("[connectors.") and section.count(".") == 1 and re.match(
                r"(kv_connector|module_path|class_name|needs_ranktable) =", line) and not _CITE.search(line):
            uncited.append(line)
    assert uncited == []


def test_keyset_helpers():
    ks = KeySet(frozenset({"a", "a.b", "a.c", "d", "d.*"}), inert={"a.x": "why"}, order=("a", "a.b", "a.c", "d", "d.*"))
    assert ks.children("") == ["a", "d"] and ks.children("a") == ["b", "c", "x"]
    assert ks.is_table("a") and ks.is_table("d") and not ks.is_table("a.b")
    assert ks.inert_reason("a.x") == "why" and ks.inert_reason("a.x.y") == "why" and ks.inert_reason("a.b") is None
    assert ks.accepts("d.anything") and ks.accepts("a.x") and not ks.accepts("a.z")


# ---- strict loading ---------------------------------------------------------------------------


def _profile_text(**edits: str) -> str:
    text = (PROFILE_DIR / f"{OLD}.toml").read_text()
    for old, new in edits.items():
        assert old in text or old.startswith("@"), old
        text = text + new if old.startswith("@") else text.replace(old, new, 1)
    return text


@pytest.mark.parametrize("edit, fragment", [
    ({"@1": "\n[extra]\nx = 1\n"}, "extra: unknown key"),
    ({'"--host" = "value"': '"--host" = "maybe"'}, "expected one of switch, value, json"),
    ({'"--host" = "value"': '"host" = "value"'}, "a flag is --name"),
    ({'"ascend_scheduler_config.enabled",': '"ascend_scheduler_config.enabled", "nested.key",'},
     "nested under 'nested'"),
    ({'kv_buffer_device = "npu"': 'kv_buffer_device = "npu"\nkv_bogus = 1'},
     "'kv_bogus' is not a [kv_transfer_config] key"),
    ({'default_connector = "llmdatadist"': 'default_connector = "nixl"'}, "no connector 'nixl'"),
    ({'engine_id = "0"': "engine_id = 0"}, "engine_id must be a string"),
    ({'prefill_tp_gt_1 = "': 'sometimes = "'}, "unknown condition"),
    ({'PHYSICAL_DEVICES = "{devices}"': 'PHYSICAL_DEVICES = "{ids}"'}, "value must be one of"),
])
def test_broken_profile_refused_naming_the_key(edit, fragment):
    with pytest.raises(ProfileError) as exc:
        parse_profile(_profile_text(**edit), source="x.toml")
    assert str(exc.value).startswith("x.toml: ") and fragment in str(exc.value)


def test_unchanged_text_parses():
    assert parse_profile(_profile_text(), source="x.toml").name == OLD


def test_unknown_profile_name_is_input_error_with_closest():
    with pytest.raises(InputError) as exc:
        load_profile("vllm-ascend-0.10.1")
    assert exc.value.key == "stack.profile" and "did you mean 'vllm-ascend-0.10.1rc1'" in str(exc.value)


def test_profiles_ship_as_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["pdwizard"]
    assert "profiles/*.toml" in patterns


# ---- session keys -----------------------------------------------------------------------------


def _session(**stack) -> dict:
    return {
        "schema_version": 1, "name": "t",
        "nodes": [{"name": "p1", "host": "192.0.0.1"}, {"name": "d1", "host": "192.0.0.2"}],
        "instances": [{"role": "prefill", "node": "p1", "devices": [0], "port": 1},
                      {"role": "decode", "node": "d1", "devices": [0], "port": 1}],
        "model": {"path": "/m/x"},
        "stack": stack,
    }


@pytest.mark.parametrize("stack, key, fragment", [
    ({"profile": "vllm-ascend-mian"}, "stack.profile", "did you mean 'vllm-ascend-main'"),
    ({"connector": "mooncak"}, "stack.connector", "did you mean 'mooncake'"),
    ({"profile": MAIN, "connector": "llmdatadist"}, "stack.connector", "offers no connector 'llmdatadist'"),
    ({"ranktable_path": "ranktable.json"}, "stack.ranktable_path", "absolute"),
    ({"ranktable_path": "/etc/pdw/"}, "stack.ranktable_path", "absolute file path"),
])
def test_stack_keys_validated(stack, key, fragment):
    with pytest.raises(SessionError) as exc:
        validate_session(_session(**stack), source="s.toml")
    assert exc.value.keys == [key] and fragment in str(exc.value) and "fix:" in str(exc.value)


def test_stack_defaults_and_ranktable_path():
    s = validate_session(_session())
    assert (s.stack.profile, s.stack.connector, s.stack.ranktable_path) == (OLD, None, None)
    assert s.ranktable_path == "~/.pdwizard/runs/t/ranktable.json"
    assert validate_session(_session(ranktable_path="/r/t.json")).ranktable_path == "/r/t.json"
