"""Sim spec: the [[node]] contract, defaults, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdwizard.errors import EXIT_INPUT, InputError
from pdwizard.sim import SimSpec, demo_spec_path, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parent.parent

FULL = '''
[[node]]
name = "p1"
host = "127.0.1.1"
port = 2222
ip = "192.0.0.1"
nic = "eth0"
soc = "A2"
npus = 8
npu_ips = ["29.0.1.1", "29.0.1.2", "29.0.1.3", "29.0.1.4", "29.0.1.5", "29.0.1.6", "29.0.1.7", "29.0.1.8"]
link_down = [3]
unhealthy = [5]
ping_loss = ["29.0.2.7"]
unreachable = false
tool_delay_ms = 0
netdetect_unset = [1]
no_gateway = [2]
no_ip = [4]
no_lldp = [6]
hccn_conf_stale = [7]
tls = 0
npu_health = {"5" = "Alarm"}
busy_npus = [2]
busy_first = 0
driver_version = "24.1.0"
cann_version = "8.2.RC1"
vllm_version = "0.10.1.1"
vllm_ascend_version = "0.10.1rc1"
extra_ips = []
auth_fail = false

[[node]]
host = "127.0.1.2"
soc = "A3"
npus = 8
vnic_ips = ["192.168.2.1", "192.168.2.2", "192.168.2.3", "192.168.2.4", "192.168.2.5", "192.168.2.6",
            "192.168.2.7", "192.168.2.8", "192.168.2.9", "192.168.2.10", "192.168.2.11", "192.168.2.12",
            "192.168.2.13", "192.168.2.14", "192.168.2.15", "192.168.2.16"]
super_pod_id = 1
tls = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
'''


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(text)
    return p


def test_every_contract_key_loads_and_defaults_resolve(tmp_path):
    spec = load_spec(write(tmp_path, FULL))
    p1, a3 = spec.nodes
    assert p1.name == "p1" and p1.chips == 8 and p1.npu_health == {"5": "Alarm"}
    assert a3.name == "sim-127-0-1-2" and a3.ip == "127.0.1.2" and a3.port == 2222 and a3.nic == "eth0"
    assert a3.chips == 16 and len(a3.npu_ips) == 16 and len(a3.sdids) == 16 and a3.super_pod_id == 1
    assert a3.npu_ips[0] == "29.0.2.1" and a3.npu_ips[15] == "29.0.2.16"  # node index 1 -> 29.0.2.x


def test_generated_npu_ips_unique_and_deterministic():
    nodes = [{"host": f"127.0.3.{i + 1}"} for i in range(5)]
    a, b = spec_from_dict({"node": nodes}), spec_from_dict({"node": nodes})
    ips = [ip for n in a.nodes for ip in n.npu_ips]
    assert len(ips) == len(set(ips)) == 40
    assert ips == [ip for n in b.nodes for ip in n.npu_ips]
    assert a.nodes[0].npu_ips[:2] == ["29.0.1.1", "29.0.1.2"]


def test_model_validate_resolves_defaults_too():
    spec = SimSpec.model_validate({"node": [{"host": "127.0.3.1"}]})
    assert spec.nodes[0].name == "sim-127-0-3-1" and spec.nodes[0].ip == "127.0.3.1"


def test_example_and_demo_specs_load():
    ex = load_spec(ROOT / "examples" / "sim-1p2d.toml")
    demo = load_spec(demo_spec_path())
    assert [n.name for n in ex.nodes] == [n.name for n in demo.nodes] == ["p1", "d1", "d2"]
    assert [n.ip for n in demo.nodes] == ["192.0.0.1", "192.0.0.2", "192.0.0.3"]
    assert all(n.soc == "A2" and n.npus == 8 and n.tool_delay_ms > 0 for n in demo.nodes)


@pytest.mark.parametrize("node, key, words", [
    ({"host": "127.0.1.1", "soc": "A5"}, "node[1].soc", ["A2", "A3"]),
    ({"host": "127.0.1.1", "colour": "red"}, "node[1].colour", ["unknown key"]),
    ({"host": "10.0.0.1"}, "node[1].host", ["loopback"]),
    ({"host": "127.0.1.1", "npu_ips": ["29.0.0.1"]}, "node[1].npu_ips", ["8", "got 1"]),
    ({"host": "127.0.1.1", "soc": "A3", "npu_ips": ["29.0.0.1"] * 8}, "node[1].npu_ips", ["16"]),
    ({"host": "127.0.1.1", "link_down": [8]}, "node[1].link_down", ["out of range", "0..7"]),
    ({"host": "127.0.1.1", "soc": "A3", "no_ip": [16]}, "node[1].no_ip", ["0..15"]),
    ({"host": "127.0.1.1", "busy_npus": [8]}, "node[1].busy_npus", ["0..7"]),
    ({"host": "127.0.1.1", "npu_health": {"9": "Alarm"}}, "node[1].npu_health", ["NPU ids"]),
    ({"host": "127.0.1.1", "npu_health": {"1": "Broken"}}, "node[1].npu_health", ["Alarm"]),
    ({"host": "127.0.1.1", "vnic_ips": ["1.1.1.1"] * 8}, "node[1].vnic_ips", ["A3"]),
    ({"host": "127.0.1.1", "tls": 2}, "node[1].tls", ["0", "1"]),
    ({"host": "127.0.1.1", "ping_loss": ["nope"]}, "node[1].ping_loss", ["IPv4"]),
    ({"host": "127.0.1.1", "npus": "8"}, "node[1].npus", ["integer"]),
    ({"host": "127.0.1.1", "npus": 9}, "node[1].npus", ["8"]),
    ({"host": "127.0.1.1", "port": 70000}, "node[1].port", ["65535"]),
    ({"port": 22}, "node[1].host", ["required"]),
    ({"host": "127.0.0.9", "port": 2222}, "node[1].port", ["already used by node[0]"]),
    ({"host": "127.0.1.1", "name": "p1"}, "node[1].name", ["unique"]),
])
def test_bad_node_names_the_key(tmp_path, node, key, words):
    first = {"name": "p1", "host": "127.0.0.9", "port": 2222}
    import tomli_w
    path = write(tmp_path, tomli_w.dumps({"node": [first, node]}))
    with pytest.raises(InputError) as exc:
        load_spec(path)
    err = exc.value
    assert err.exit_code == EXIT_INPUT
    assert err.source == str(path) and err.key == key, str(err)
    text = str(err)
    assert str(path) in text and key in text and "fix:" in text
    for w in words:
        assert w in text, (w, text)


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="not valid TOML"):
        load_spec(write(tmp_path, "[[node]\nhost = 1"))
    with pytest.raises(InputError) as exc:
        load_spec(write(tmp_path, "title = 'x'\n"))
    assert "node" in str(exc.value)
    with pytest.raises(InputError) as exc:
        load_spec(write(tmp_path, ""))
    assert exc.value.key == "node"
