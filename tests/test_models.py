"""The pydantic session models: field rules, secrets, convenience methods."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from pdwizard.models import (
    KNOWN_CHECKS,
    Checks,
    Instance,
    JumpSpec,
    ModelSpec,
    Node,
    Session,
    SshDefaults,
    Stack,
    Verify,
    is_secret_key,
    iter_model_fields,
    parse_jump,
)


def base() -> dict:
    return {
        "schema_version": 1,
        "name": "qwen3-1p2d",
        "ssh": {"user": "root", "identity_file": "~/.ssh/id_ed25519", "known_hosts": "~/.ssh/known_hosts"},
        "nodes": [
            {"name": "p1", "host": "192.0.0.1", "nic": "eth0"},
            {"name": "d1", "host": "bmc-d1.lab", "ip": "192.0.0.2", "user": "admin", "port": 2200,
             "identity_file": "~/keys/d1", "jump": "ops@bastion:2022"},
            {"name": "d2", "host": "192.0.0.3", "jump": ""},
        ],
        "instances": [
            {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
            {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
            {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700},
        ],
        "model": {"path": "/model/Qwen3-30B-A3B", "served_name": "qwen3-moe"},
    }


def build(data: dict | None = None) -> Session:
    return Session.model_validate(base() if data is None else data)


# ---- convenience -----------------------------------------------------------------------


def test_lookups_and_role_lists():
    s = build()
    assert s.node("d1").host == "bmc-d1.lab"
    with pytest.raises(KeyError, match="p1, d1, d2"):
        s.node("nope")
    assert [i.node for i in s.prefills()] == ["p1"]
    assert [i.node for i in s.decodes()] == ["d1", "d2"]
    assert s.instances_on("d2") == [s.instances[2]]
    assert s.instances_on(s.node("p1")) == [s.instances[0]]
    assert s.instances_on("unused") == []
    assert s.instances[0].tensor_parallel_size == 2
    assert s.instances[1].label == "decode d1:13700"


def test_node_ip_is_ip_else_host():
    s = build()
    assert s.node_ip("p1") == "192.0.0.1"  # no ip: host
    assert s.node_ip("d1") == "192.0.0.2"  # ip wins over host
    assert s.node_ip(s.node("d1")) == "192.0.0.2"


def test_ssh_target_args_merge_defaults_and_overrides(monkeypatch):
    monkeypatch.setenv("HOME", "/home/op")
    data = base()
    data["ssh"]["jump"] = "gw.example.com"
    data["ssh"]["connect_timeout"] = 5
    s = build(data)
    assert s.ssh_target_args("p1") == {
        "user": "root", "port": 22, "identity_file": "/home/op/.ssh/id_ed25519",
        "known_hosts": "/home/op/.ssh/known_hosts", "trust_on_first_use": False,
        "jump": "gw.example.com", "connect_timeout": 5.0,
    }
    d1 = s.ssh_target_args("d1")
    assert (d1["user"], d1["port"], d1["identity_file"], d1["jump"]) == (
        "admin", 2200, "/home/op/keys/d1", "ops@bastion:2022")
    assert s.ssh_target_args("d2")["jump"] is None  # jump = "" on the node: direct


def test_ssh_target_args_unset_means_ssh_defaults():
    s = build({**base(), "ssh": {}})
    args = s.ssh_target_args("p1")
    assert args["user"] is None and args["identity_file"] is None and args["known_hosts"] is None
    assert args["port"] == 22 and args["connect_timeout"] == 10.0 and args["trust_on_first_use"] is False
    assert s.ssh.command_timeout == 120.0


def test_served_model_name_defaults_to_basename():
    assert ModelSpec(path="/model/Qwen3-30B-A3B/").served_model_name == "Qwen3-30B-A3B"
    assert ModelSpec(path="/model/Qwen3-30B-A3B", served_name="qwen3-moe").served_model_name == "qwen3-moe"
    assert ModelSpec(path="/m/x").served_name is None  # the field keeps what the file says
    with pytest.raises(ValidationError, match="cannot be derived"):
        ModelSpec(path="/")


def test_proxy_node_defaults_to_first_prefill():
    assert build().proxy_node().name == "p1"
    assert build().proxy.port == 8080
    s = build({**base(), "proxy": {"node": "d2", "port": 9000}})
    assert s.proxy_node().name == "d2"


def test_defaults():
    c = Checks()
    assert (c.ping, c.ping_budget, c.skip) == ("auto", 48, [])
    assert Verify(prompt="hi").max_tokens == 100 and Verify(prompt="hi").expect is None
    assert Stack().container is None
    assert set(KNOWN_CHECKS) == {"lldp", "link", "net_health", "netdetect", "gateway", "ip", "hccn_conf",
                                 "tls", "ping", "versions"}


# ---- field rules -------------------------------------------------------------------------


@pytest.mark.parametrize("model, data, fragment", [
    (Node, {"name": "bad name", "host": "h"}, "not a valid name"),
    (Node, {"name": "p1\n", "host": "h"}, "not a valid name"),
    (Node, {"name": "p1", "host": "root@10.0.0.1"}, "user name"),
    (Node, {"name": "p1", "host": "10.0.0.1:22"}, "port"),
    (Node, {"name": "p1", "host": "10.0.0.1", "ip": "10.0.0"}, "not an IPv4"),
    (Node, {"name": "p1", "host": "10.0.0.1", "ip": "fe80::1"}, "not an IPv4"),
    (Node, {"name": "p1", "host": "10.0.0.1", "nic": "a very long nic name"}, "network interface"),
    (Node, {"name": "p1", "host": "10.0.0.1", "port": 0}, "1..65535"),
    (Node, {"name": "p1", "host": "10.0.0.1", "jump": "a b"}, "[user@]host[:port]"),
    (Instance, {"role": "prefill", "node": "p1", "devices": [], "port": 1}, "at least one NPU"),
    (Instance, {"role": "prefill", "node": "p1", "devices": [16], "port": 1}, "0..15"),
    (Instance, {"role": "prefill", "node": "p1", "devices": [-1], "port": 1}, "0..15"),
    (Instance, {"role": "prefill", "node": "p1", "devices": [1, 1], "port": 1}, "more than once"),
    (Instance, {"role": "prefill", "node": "p1", "devices": [1], "port": 65536}, "1..65535"),
    (Instance, {"role": "both", "node": "p1", "devices": [1], "port": 1}, "prefill"),
    (SshDefaults, {"connect_timeout": 0}, "positive"),
    (SshDefaults, {"command_timeout": -1.0}, "positive"),
    (SshDefaults, {"user": "a b"}, "login name"),
    (Checks, {"ping_budget": 0}, "at least 1"),
    (Checks, {"skip": ["lldpp"]}, "lldp"),
    (Checks, {"ping": "sometimes"}, "auto"),
    (Verify, {"prompt": "  "}, "prompt is empty"),
    (Verify, {"prompt": "hi", "max_tokens": 0}, "at least 1"),
    (Verify, {"prompt": "hi", "expect": ""}, "expect is empty"),
    (Stack, {"container": "no spaces please"}, "container"),
    (Stack, {"container": "vllm\n"}, "container"),
    (ModelSpec, {"path": ""}, "non-empty path"),
])
def test_field_rules(model, data, fragment):
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    assert fragment in str(exc.value)


def test_valid_fields_accepted():
    Node(name="a.b_c-1", host="fe80::1", ip="10.0.0.1", nic="enp189s0f0", jump="[fe80::2]:22")
    Instance(role="decode", node="d1", devices=list(range(16)), port=65535)
    Checks(ping="full", skip=list(KNOWN_CHECKS))
    Stack(container="vllm-ascend_0.10")


def test_strict_types_no_silent_conversion():
    with pytest.raises(ValidationError):
        Instance.model_validate({"role": "prefill", "node": "p1", "devices": [0], "port": "13700"})
    with pytest.raises(ValidationError):
        Instance.model_validate({"role": "prefill", "node": "p1", "devices": [True], "port": 1})
    with pytest.raises(ValidationError):
        SshDefaults.model_validate({"trust_on_first_use": "yes"})
    assert SshDefaults.model_validate({"connect_timeout": 3}).connect_timeout == 3.0  # int for float is fine


def test_unknown_key_forbidden_everywhere():
    for model, data in [(SshDefaults, {"usr": "x"}), (Checks, {"pings": "off"}), (Stack, {"image": "x"}),
                        (Verify, {"prompt": "x", "expected": "y"}), (ModelSpec, {"path": "/m", "name": "x"})]:
        with pytest.raises(ValidationError, match="Extra inputs"):
            model.model_validate(data)


def test_cross_field_rules_apply_to_direct_construction():
    data = base()
    data["instances"][2]["node"] = "d1"  # devices 6,7 on d1 twice, same port
    with pytest.raises(ValidationError) as exc:
        build(data)
    assert "instances[2].devices" in str(exc.value) and "instances[2].port" in str(exc.value)


def test_schema_version_other_than_1_refused():
    with pytest.raises(ValidationError, match="supported"):
        build({**base(), "schema_version": 2})


# ---- jump ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, parsed", [
    ("bastion", JumpSpec(None, "bastion", None)),
    ("ops@bastion", JumpSpec("ops", "bastion", None)),
    ("ops@10.1.2.3:2022", JumpSpec("ops", "10.1.2.3", 2022)),
    ("[fe80::1]:22", JumpSpec(None, "fe80::1", 22)),
])
def test_parse_jump(spec, parsed):
    assert parse_jump(spec) == parsed


@pytest.mark.parametrize("spec", ["", "a b", "ops@", "host:0", "host:70000", "[nothex]:1", "a@b@c"])
def test_parse_jump_rejects(spec):
    with pytest.raises(ValueError):
        parse_jump(spec)


def test_jump_with_password_refused_without_echo():
    with pytest.raises(ValidationError) as exc:
        SshDefaults(jump="ops:Hunter2Pw@bastion")
    assert "password" in str(exc.value)
    assert "Hunter2Pw" not in str(exc.value)


# ---- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "password", "PASSWORD", "Password", "passphrase", "token", "api_key", "API-KEY", "ApiKey", "secret",
    "ssh_password", "sudo_password", "key_passphrase", "github_token", "client_secret", "db_api_key",
    "private_key", "secret_key", "passwd",
])
def test_is_secret_key_positive(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "max_tokens", "known_hosts", "identity_file", "trust_on_first_use", "ping_budget", "user", "jump",
    "name", "host", "served_name", "expect", "skip", "container", "command_timeout",
])
def test_is_secret_key_negative(key):
    assert not is_secret_key(key)


def test_no_model_field_could_hold_a_secret():
    paths = list(iter_model_fields())
    assert "nodes.host" in paths and "verify.max_tokens" in paths and "ssh.identity_file" in paths
    assert [p for p in paths if is_secret_key(p.rsplit(".", 1)[-1])] == []


@pytest.mark.parametrize("where", ["top", "ssh", "node", "instance", "model", "checks", "verify"])
def test_session_cannot_be_built_holding_a_secret(where):
    data = base()
    data["verify"] = [{"prompt": "hi"}]
    data["checks"] = {}
    target = {"top": data, "ssh": data["ssh"], "node": data["nodes"][1], "instance": data["instances"][0],
              "model": data["model"], "checks": data["checks"], "verify": data["verify"][0]}[where]
    target["password"] = "S3cretValue!"
    with pytest.raises(ValidationError) as exc:
        build(data)
    assert "password" in str(exc.value)
    assert "S3cretValue!" not in str(exc.value)


def test_secret_cannot_be_assigned_after_construction():
    s = build()
    with pytest.raises(ValueError):
        s.password = "S3cretValue!"  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        s.ssh.passphrase = "S3cretValue!"  # type: ignore[attr-defined]
    assert "S3cretValue!" not in repr(s)


def test_base_is_not_mutated_by_validation():
    data = base()
    snapshot = copy.deepcopy(data)
    build(data)
    assert data == snapshot
