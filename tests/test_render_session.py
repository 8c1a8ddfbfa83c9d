"""The session keys rendering reads: validation naming the key, defaults, saving."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import tomli_w

from pdwizard.models import GUIDE_ADDITIONAL_CONFIG, Instance, ModelSpec, Proxy
from pdwizard.render import render_instance
from pdwizard.session import SessionError, load_session, parse_session, session_to_toml, validate_session


def base() -> dict:
    return {
        "schema_version": 1,
        "name": "t",
        "nodes": [{"name": "p1", "host": "192.0.0.1", "nic": "eth0"},
                  {"name": "d1", "host": "192.0.0.2", "nic": "eth0"}],
        "instances": [{"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
                      {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700}],
        "model": {"path": "/model/Qwen3-30B-A3B"},
    }


def load_err(tmp_path: Path, mutate) -> SessionError:
    data = base()
    mutate(data)
    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(SessionError) as exc:
        load_session(path)
    return exc.value


def _m(key, value):
    return lambda d: d["model"].__setitem__(key, value)


def _i(key, value, index=0):
    return lambda d: d["instances"][index].__setitem__(key, value)


@pytest.mark.parametrize("mutate, key, fragment", [
    (_m("gpu_memory_utilization", 1.5), "model.gpu_memory_utilization", "(0, 1]"),
    (_m("gpu_memory_utilization", "0.9"), "model.gpu_memory_utilization", "expected a number"),
    (_m("max_model_len", 0), "model.max_model_len", "at least 1"),
    (_m("max_num_batched_tokens", 6144.0), "model.max_num_batched_tokens", "integer"),
    (_m("seed", -1), "model.seed", "0 or more"),
    (_m("trust_remote_code", "yes"), "model.trust_remote_code", "true or false"),
    (_m("extra_args", "--max-num-seqs 16"), "model.extra_args", "expected an array"),
    (_m("extra_args", ["--max-num-seqs", ""]), "model.extra_args", "extra_args[1]"),
    (_m("extra_args", ["--max-num-seqs", 16]), "model.extra_args[1]", "string"),
    (_m("additional_config", {"x": {"when": dt.date(2025, 1, 1)}}), "model.additional_config", "additional_config.x.when"),
    (_m("additional_config", {"x": float("nan")}), "model.additional_config", "JSON cannot hold"),
    (_m("additional_config", ["a"]), "model.additional_config", "table"),
    (_m("max_model_length", 1), "model.max_model_length", "did you mean 'max_model_len'"),
    (_i("kv_port", "20x"), "instances[0].kv_port", "not a port number"),
    (_i("kv_port", 70000), "instances[0].kv_port", "1..65535"),
    (_i("engine_id", 0), "instances[0].engine_id", "double quotes"),
    (_i("engine_id", "a b"), "instances[0].engine_id", "not a valid engine id"),
    (_i("tensor_parallel_size", 4), "instances[0].tensor_parallel_size", "does not match the 2 device(s)"),
    (_i("enforce_eager", "yes"), "instances[0].enforce_eager", "true or false"),
    (_i("extra_args", ["--x", "\x00"]), "instances[0].extra_args", "NUL"),
    (lambda d: d.__setitem__("proxy", {"kind": "upstrem"}), "proxy.kind", "did you mean 'upstream'"),
    (lambda d: d.__setitem__("proxy", {"script": ""}), "proxy.script", "non-empty path"),
])
def test_new_keys_validated_naming_the_key(tmp_path, mutate, key, fragment):
    err = load_err(tmp_path, mutate)
    assert key in err.keys, (key, err.keys, str(err))
    assert fragment in str(err) and "fix:" in str(err)


def test_a_derived_default_adds_no_error_of_its_own(tmp_path):
    err = load_err(tmp_path, _i("port", 0))
    assert err.keys == ["instances[0].port"]


def test_defaults():
    m = ModelSpec(path="/m/x")
    assert (m.max_model_len, m.max_num_batched_tokens, m.gpu_memory_utilization, m.seed) == (6144, 6144, 0.9, 1024)
    assert (m.trust_remote_code, m.enable_expert_parallel, m.enable_prefix_caching) == (False, False, False)
    assert m.extra_args == [] and m.additional_config == GUIDE_ADDITIONAL_CONFIG
    assert m.additional_config is not GUIDE_ADDITIONAL_CONFIG  # a copy: mutating one session changes no other
    p = Proxy()
    assert (p.kind, p.script) == ("builtin", "load_balance_proxy_server_example.py")
    pre = Instance(role="prefill", node="p1", devices=[0, 1], port=1)
    dec = Instance(role="decode", node="d1", devices=[3], port=1)
    assert (pre.tensor_parallel_size, pre.eager, dec.tensor_parallel_size, dec.eager) == (2, True, 1, False)
    assert (pre.kv_port, pre.engine_id, pre.additional_config, pre.extra_args) == (None, None, None, [])


def test_unset_tensor_parallel_size_follows_devices_and_is_not_written():
    s = validate_session(base())
    s.instances[1].devices = [4, 5, 6, 7]
    assert s.instances[1].tensor_parallel_size == 4
    assert "tensor_parallel_size" not in session_to_toml(s)
    assert "--tensor-parallel-size" in (argv := render_instance(s, 1).argv)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    data = base()
    data["instances"][0]["tensor_parallel_size"] = 2
    assert "tensor_parallel_size = 2" in session_to_toml(validate_session(data))  # set: kept


def test_new_keys_round_trip_with_inline_tables():
    data = base()
    data["model"].update(additional_config={"torchair_graph_config": {"enabled": False, "graph_batch_sizes": [1, 2]},
                                            "refresh": True}, extra_args=["--max-num-seqs", "16"], seed=7)
    data["instances"][1].update(kv_port="20001", engine_id="d-1", enforce_eager=True,
                                additional_config={"ascend_scheduler_config": {"max_num_seqs": 8}}, extra_args=[])
    data["proxy"] = {"kind": "upstream", "script": "/opt/lb proxy.py"}
    data["stack"] = {"profile": "vllm-ascend-0.10.1rc1", "connector": "mooncake", "ranktable_path": "/r/t.json"}
    s = validate_session(data)
    text = session_to_toml(s)
    assert "additional_config = { torchair_graph_config = { enabled = false, graph_batch_sizes = [1, 2] }" in text
    assert 'kv_port = "20001"' in text  # a string stays a string
    again = parse_session(text)
    assert again == s and again.model_dump(exclude_unset=True) == s.model_dump(exclude_unset=True)
    assert session_to_toml(again) == text
