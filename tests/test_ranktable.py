"""Ranktable generation: equal to vllm-ascend's own generator (reference b8796b06c8).

The reference examples (tests/fixtures/ranktable/*, copied from
shared/reference/ranktable-examples) hold the generator's inputs and its byte-exact
output; they must come out equal, key order and string types included, both through
the pure generator model and through a session + discovered facts. The rest pins the
spec's rules (ranktable-spec.md) one by one, and the errors pdwizard raises where the
generator would fail or hang.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pdwizard.errors import InputError
from pdwizard.models import Session
from pdwizard.ranktable import (
    GenNode,
    SpodInfo,
    build_ranktable,
    generate_ranktable,
    generator_run,
    parse_local_device_ids,
    ranktable_json,
)
from pdwizard.report import NodeFacts, NpuFacts

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ranktable"
EXAMPLES = ["a-1p2d-guide", "b-1p1d-2x8"]


def ordered(value: Any) -> Any:
    """JSON value with every object as a list of (key, value) pairs: == then checks key order."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return value


def assert_same_json(ours: Any, expected: Any) -> None:
    assert ordered(ours) == ordered(expected)
    # and the same types: every value a string, as upstream writes
    assert json.dumps(ours, indent=4) == json.dumps(expected, indent=4)


def load_example(name: str) -> tuple[dict, bytes]:
    d = FIXTURES / name
    return json.loads((d / "inputs.json").read_text()), (d / "ranktable.json").read_bytes()


def gen_nodes(inputs: dict) -> list[GenNode]:
    """inputs.json nodes -> GenNode, field for field."""
    return [GenNode(
        local_host=n["host_ip"],
        local_device_ids=n["local_device_ids"],
        total_count=n["npu_smi_info_l"]["total_count"],
        chip_count=n["npu_smi_info_l"]["chip_count_of_every_npu"],
        device_ips={int(k): v for k, v in n["device_ips"].items()},
    ) for n in inputs["nodes"]]


def a2_facts(name: str, host_ip: str, device_ips: dict[int, str], *, extra_addresses=()) -> NodeFacts:
    return NodeFacts(
        node=name, hostname=name, addresses=[host_ip, *extra_addresses], nics={"eth0": [host_ip]}, soc="A2",
        npus=[NpuFacts(device=d, npu_id=d, chip_id=0, ip=ip, netmask="255.255.0.0")
              for d, ip in sorted(device_ips.items())],
    )


def a3_facts(name: str, host_ip: str, *, index: int, super_pod_id: int = 7, cards: int = 8) -> NodeFacts:
    """An A3 node: 8 cards x 2 dies, phy id = logic id, card = id // 2, chip = id % 2."""
    return NodeFacts(
        node=name, hostname=name, addresses=[host_ip], nics={"eth0": [host_ip]}, soc="A3",
        npus=[NpuFacts(device=d, npu_id=d // 2, chip_id=d % 2, ip=f"29.0.{index}.{d + 1}",
                       vnic_ip=f"192.168.{index}.{d + 1}", sdid=(index << 22) | (d << 16),
                       super_pod_id=super_pod_id) for d in range(cards * 2)],
    )


def session(nodes: list[tuple[str, str]], instances: list[tuple[str, str, list[int]]], **extra) -> Session:
    return Session.model_validate({
        "schema_version": 1, "name": "rt",
        "nodes": [{"name": n, "host": ip} for n, ip in nodes],
        "instances": [{"role": r, "node": n, "devices": d, "port": 13700 + k}
                      for k, (r, n, d) in enumerate(instances)],
        "model": {"path": "/model/Qwen3-30B-A3B"},
        **extra,
    })


def example_session(inputs: dict) -> tuple[Session, dict[str, NodeFacts]]:
    """The session an operator writes for the example, and what discovery finds."""
    nodes, instances, facts = [], [], {}
    for k, n in enumerate(inputs["nodes"]):
        name = f"n{k}"
        nodes.append((name, n["host_ip"]))
        ids = n["local_device_ids"]
        devices = [int(i) for i in ids.split(",")] if ids else list(range(n["npu_smi_info_l"]["total_count"]))
        instances.append((n["intended_role"], name, devices))
        facts[name] = a2_facts(name, n["host_ip"], {int(d): ip for d, ip in n["device_ips"].items()})
    return session(nodes, instances), facts


# ---------------------------------------------------------------------------------------
# the reference examples


@pytest.mark.parametrize("name", EXAMPLES)
def test_reference_example_from_generator_inputs(name: str) -> None:
    inputs, expected = load_example(name)
    opts = inputs["gen_ranktable_sh_options"]
    table = generate_ranktable(gen_nodes(inputs), soc=inputs["soc_version"],
                               prefill_device_cnt=opts["prefill_device_cnt"],
                               decode_device_cnt=opts["decode_device_cnt"])
    assert_same_json(table, json.loads(expected))
    assert ranktable_json(table).encode() == expected


@pytest.mark.parametrize("name", EXAMPLES)
def test_reference_example_from_session_and_facts(name: str) -> None:
    inputs, expected = load_example(name)
    sess, facts = example_session(inputs)
    table = build_ranktable(sess, facts)
    assert_same_json(table, json.loads(expected))
    assert ranktable_json(table).encode() == expected


def test_session_maps_onto_the_guides_generator_command() -> None:
    """Nodes play --ips, instance devices --local-device-ids: the guide's exact commands."""
    inputs, _ = load_example("a-1p2d-guide")
    sess, facts = example_session(inputs)
    run = generator_run(sess, facts)
    assert run.ips == inputs["gen_ranktable_sh_options"]["ips"]
    assert [run.sh_command(i) for i in range(3)] == [n["sh_command"] for n in inputs["nodes"]]
    assert [run.local_device_ids(i) for i in range(3)] == [n["local_device_ids"] for n in inputs["nodes"]]


def test_fixture_bytes_are_the_generators() -> None:
    """Guard against an editor 'fixing' the fixtures: upstream writes no trailing newline."""
    for name in EXAMPLES:
        data = (FIXTURES / name / "ranktable.json").read_bytes()
        assert data.endswith(b"}") and b"\r" not in data and data.startswith(b'{\n    "version": "1.2",\n')


def test_serialisation_is_json_dump_indent_4() -> None:
    table = generate_ranktable(
        [GenNode("10.0.0.1", {0: "29.0.0.1", 1: "29.0.0.2"}, local_device_ids="1")],
        soc="A2", prefill_device_cnt=0, decode_device_cnt=1)
    text = ranktable_json(table)
    assert text == (
        '{\n'
        '    "version": "1.2",\n'
        '    "server_count": "1",\n'
        '    "prefill_device_list": [],\n'
        '    "decode_device_list": [\n'
        '        {\n'
        '            "server_id": "10.0.0.1",\n'
        '            "device_id": "1",\n'
        '            "device_ip": "29.0.0.2",\n'
        '            "cluster_id": "1"\n'
        '        }\n'
        '    ],\n'
        '    "status": "completed"\n'
        '}'
    )
    # ASCII only, like json.dump's default
    assert ranktable_json({"server_id": "h\u00e9"}) == '{\n    "server_id": "h\\u00e9"\n}'


# ---------------------------------------------------------------------------------------
# generator rules (ranktable-spec.md §2, §4, §5)


def two_a2(ids0=None, ids1=None, total=8) -> list[GenNode]:
    return [GenNode(f"192.0.0.{k + 1}", {d: f"29.0.{k + 1}.{d + 1}" for d in range(8)},
                    local_device_ids=ids, total_count=total) for k, ids in enumerate((ids0, ids1))]


def ids_of(records: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["server_id"], r["device_id"], r["cluster_id"]) for r in records]


def test_local_device_ids_as_int_parses_them() -> None:
    assert parse_local_device_ids("6,7") == [6, 7]
    assert parse_local_device_ids(" 07, 1") == [7, 1]  # int(): spaces, leading zeros; order kept
    assert parse_local_device_ids("3,3") == [3, 3]  # no de-duplication
    for bad in ("0,,1", "0, 1,", "a", "0 1", " "):
        with pytest.raises(InputError) as err:
            parse_local_device_ids(bad)
        assert "--local-device-ids must be a comma-separated list of integers" in str(err.value)
        assert repr(bad) in str(err.value)


def test_local_device_ids_order_duplicates_and_normalisation() -> None:
    table = generate_ranktable(two_a2("07,2,2", "5"), soc="A2", prefill_device_cnt=3, decode_device_cnt=1)
    assert ids_of(table["prefill_device_list"]) == [
        ("192.0.0.1", "7", "1"), ("192.0.0.1", "2", "2"), ("192.0.0.1", "2", "3")]
    assert ids_of(table["decode_device_list"]) == [("192.0.0.2", "5", "4")]
    assert table["prefill_device_list"][0]["device_ip"] == "29.0.1.8"


def test_without_local_device_ids_every_chip_from_zero() -> None:
    """Quirk 6: 0 .. Total Count x Chip Count - 1; "" counts as not given."""
    for given in (None, "", []):
        table = generate_ranktable(two_a2(given, given, total=2), soc="A2",
                                   prefill_device_cnt=2, decode_device_cnt=2)
        assert ids_of(table["prefill_device_list"]) == [("192.0.0.1", "0", "1"), ("192.0.0.1", "1", "2")]
        assert ids_of(table["decode_device_list"]) == [("192.0.0.2", "0", "3"), ("192.0.0.2", "1", "4")]


def test_cluster_ids_count_dropped_devices_and_server_count_counts_ranks() -> None:
    """Quirks 2-4: a host split between roles; host 2 contributes nothing yet counts."""
    table = generate_ranktable(two_a2(), soc="A2", prefill_device_cnt=4, decode_device_cnt=4)
    assert table["server_count"] == "2"
    assert ids_of(table["prefill_device_list"]) == [("192.0.0.1", str(d), str(d + 1)) for d in range(4)]
    assert ids_of(table["decode_device_list"]) == [("192.0.0.1", str(d), str(d + 1)) for d in range(4, 8)]
    # the tail is dropped silently; cluster ids of host 2 (9..16) never appear
    table = generate_ranktable(two_a2("0,1", "0,1,2"), soc="A2", prefill_device_cnt=1, decode_device_cnt=2)
    assert ids_of(table["decode_device_list"]) == [("192.0.0.1", "1", "2"), ("192.0.0.2", "0", "3")]


def test_counts_are_checked_like_the_generator_and_stricter() -> None:
    with pytest.raises(InputError) as err:
        generate_ranktable(two_a2("0", "0"), soc="A2", prefill_device_cnt=2, decode_device_cnt=1)
    assert ("prefill_device_cnt + decode_device_cnt must be less than or equal to number of all devices "
            "in cluster") in str(err.value)
    for p, d in ((-1, 2), (1, -1), (0, 0)):  # quirk 10: upstream accepts these
        with pytest.raises(InputError, match="must be >= 0"):
            generate_ranktable(two_a2(), soc="A2", prefill_device_cnt=p, decode_device_cnt=d)


def test_device_without_address_is_an_error_naming_node_and_device() -> None:
    nodes = [GenNode("192.0.0.1", {0: "29.0.1.1"}, local_device_ids="0,3")]
    with pytest.raises(InputError) as err:
        generate_ranktable(nodes, soc="A2", prefill_device_cnt=1, decode_device_cnt=1)
    assert "192.0.0.1" in str(err.value) and "NPU 3" in str(err.value) and "-ip -g" in str(err.value)
    assert err.value.key == "nodes[0].device_ips"


def test_a3_records_vnic_super_pod_and_card_chip_arithmetic() -> None:
    """A3: device_ip from -vnic, super_pod_id then super_device_id (strings, as printed),
    spod-info asked for card = id // chips and chip = id % chips (quirk 7)."""
    spod = {(2, 1): SpodInfo("3", "167837696"), (0, 0): SpodInfo("3", "167772160")}
    node = GenNode("10.1.0.1", {5: "192.168.1.6", 0: "192.168.1.1"}, local_device_ids="5,0",
                   chip_count=2, spod=spod)
    table = generate_ranktable([node], soc="A3", prefill_device_cnt=1, decode_device_cnt=1)
    assert ordered(table["prefill_device_list"]) == ordered([{
        "server_id": "10.1.0.1", "device_id": "5", "device_ip": "192.168.1.6",
        "super_pod_id": "3", "super_device_id": "167837696", "cluster_id": "1"}])
    assert table["decode_device_list"][0]["super_device_id"] == "167772160"
    # chip count 1 (a misread A3) would ask card 5 chip 0: no such die
    with pytest.raises(InputError) as err:
        generate_ranktable([GenNode("10.1.0.1", node.device_ips, "5", chip_count=1, spod=spod)],
                           soc="A3", prefill_device_cnt=1, decode_device_cnt=0)
    assert "spod-info -i 5 -c 0" in str(err.value)


def test_a2_path_for_anything_but_a3() -> None:
    node = GenNode("10.1.0.1", {0: "29.0.0.1"}, local_device_ids="0", spod={(0, 0): SpodInfo("1", "2")})
    for soc in ("A2", "310P", "undefined"):
        rec = generate_ranktable([node], soc=soc, prefill_device_cnt=1, decode_device_cnt=0)
        assert list(rec["prefill_device_list"][0]) == ["server_id", "device_id", "device_ip", "cluster_id"]


# ---------------------------------------------------------------------------------------
# from a session and discovered facts


A3_EXPECTED = """{
    "version": "1.2",
    "server_count": "2",
    "prefill_device_list": [
        {
            "server_id": "10.0.0.1",
            "device_id": "2",
            "device_ip": "192.168.1.3",
            "super_pod_id": "7",
            "super_device_id": "4325376",
            "cluster_id": "1"
        },
        {
            "server_id": "10.0.0.1",
            "device_id": "3",
            "device_ip": "192.168.1.4",
            "super_pod_id": "7",
            "super_device_id": "4390912",
            "cluster_id": "2"
        }
    ],
    "decode_device_list": [
        {
            "server_id": "10.0.0.2",
            "device_id": "0",
            "device_ip": "192.168.2.1",
            "super_pod_id": "0",
            "super_device_id": "8388608",
            "cluster_id": "3"
        },
        {
            "server_id": "10.0.0.2",
            "device_id": "1",
            "device_ip": "192.168.2.2",
            "super_pod_id": "0",
            "super_device_id": "8454144",
            "cluster_id": "4"
        }
    ],
    "status": "completed"
}"""


def test_a3_session_uses_vnic_sdid_and_super_pod_id() -> None:
    sess = session([("d", "10.0.0.2"), ("p", "10.0.0.1")],
                   [("decode", "d", [0, 1]), ("prefill", "p", [2, 3])])
    facts = {"p": a3_facts("p", "10.0.0.1", index=1, super_pod_id=7),
             "d": a3_facts("d", "10.0.0.2", index=2, super_pod_id=0)}  # 0 is a valid pod id
    assert ranktable_json(build_ranktable(sess, facts)) == A3_EXPECTED


def test_a3_spod_comes_from_the_die_the_arithmetic_names() -> None:
    """Quirk 7 on facts: if npu-smi -m mapped device 5 elsewhere, upstream still asks card 2 chip 1."""
    facts = a3_facts("p", "10.0.0.1", index=1)
    five = facts.npu(5)
    five.npu_id, five.chip_id, five.sdid = 3, 0, 999  # device 5 claims card 3 chip 0
    six = facts.npu(6)
    six.npu_id, six.chip_id, six.sdid = 2, 1, 12345  # and (2, 1) is device 6's die
    sess = session([("p", "10.0.0.1")], [("prefill", "p", [5]), ("decode", "p", [0])])
    rec = build_ranktable(sess, {"p": facts})["prefill_device_list"][0]
    assert (rec["device_ip"], rec["super_device_id"]) == ("192.168.1.6", "12345")


def test_prefill_nodes_first_whatever_the_session_order() -> None:
    nodes = [("d1", "10.0.0.1"), ("p1", "10.0.0.2"), ("d2", "10.0.0.3"), ("p2", "10.0.0.4")]
    sess = session(nodes, [("decode", "d1", [0]), ("prefill", "p1", [1]), ("decode", "d2", [2]),
                           ("prefill", "p2", [3])])
    facts = {n: a2_facts(n, ip, {d: f"29.0.{k}.{d + 1}" for d in range(8)}) for k, (n, ip) in enumerate(nodes)}
    run = generator_run(sess, facts)
    assert run.ips == ["10.0.0.2", "10.0.0.4", "10.0.0.1", "10.0.0.3"]
    assert (run.prefill_device_cnt, run.decode_device_cnt) == (2, 2)
    table = build_ranktable(sess, facts)
    assert ids_of(table["prefill_device_list"]) == [("10.0.0.2", "1", "1"), ("10.0.0.4", "3", "2")]
    assert ids_of(table["decode_device_list"]) == [("10.0.0.1", "0", "3"), ("10.0.0.3", "2", "4")]


def test_several_instances_per_node_and_one_mixed_node() -> None:
    nodes = [("d", "10.0.0.1"), ("m", "10.0.0.2"), ("p", "10.0.0.3"), ("idle", "10.0.0.4")]
    sess = session(nodes, [
        ("decode", "d", [0, 1]), ("decode", "d", [4, 5]),
        ("decode", "m", [6, 7]),  # listed before the mixed node's prefill: still after it
        ("prefill", "m", [2, 3]),
        ("prefill", "p", [0, 1]), ("prefill", "p", [7, 6]),  # device order as given (TP order)
    ])
    facts = {n: a2_facts(n, ip, {d: f"29.0.{k}.{d + 1}" for d in range(8)}) for k, (n, ip) in enumerate(nodes)}
    run = generator_run(sess, facts)
    assert run.node_names == ("p", "m", "d")  # "idle" runs nothing: not a rank
    assert [run.local_device_ids(i) for i in range(3)] == ["0,1,7,6", "2,3,6,7", "0,1,4,5"]
    table = build_ranktable(sess, facts)
    assert table["server_count"] == "3"
    assert ids_of(table["prefill_device_list"]) == [
        ("10.0.0.3", "0", "1"), ("10.0.0.3", "1", "2"), ("10.0.0.3", "7", "3"), ("10.0.0.3", "6", "4"),
        ("10.0.0.2", "2", "5"), ("10.0.0.2", "3", "6")]
    assert ids_of(table["decode_device_list"]) == [
        ("10.0.0.2", "6", "7"), ("10.0.0.2", "7", "8"),
        ("10.0.0.1", "0", "9"), ("10.0.0.1", "1", "10"), ("10.0.0.1", "4", "11"), ("10.0.0.1", "5", "12")]


def test_single_node_1p1d() -> None:
    sess = session([("n", "10.0.0.1")], [("decode", "n", [4, 5, 6, 7]), ("prefill", "n", [0, 1, 2, 3])])
    facts = {"n": a2_facts("n", "10.0.0.1", {d: f"29.0.0.{d + 1}" for d in range(8)})}
    table = build_ranktable(sess, facts)
    assert table["server_count"] == "1"
    assert [r["device_id"] for r in table["prefill_device_list"]] == ["0", "1", "2", "3"]
    assert [r["cluster_id"] for r in table["decode_device_list"]] == ["5", "6", "7", "8"]


# ---------------------------------------------------------------------------------------
# where the generator would fail or hang: a clear InputError


def guide() -> tuple[Session, dict[str, NodeFacts]]:
    inputs, _ = load_example("a-1p2d-guide")
    return example_session(inputs)


def test_two_nodes_with_both_roles_cannot_be_expressed() -> None:
    nodes = [("a", "10.0.0.1"), ("b", "10.0.0.2")]
    sess = session(nodes, [("prefill", "a", [0]), ("decode", "a", [1]), ("prefill", "b", [0]),
                           ("decode", "b", [1])])
    facts = {n: a2_facts(n, ip, {0: "29.0.0.1", 1: "29.0.0.2"}) for n, ip in nodes}
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    assert err.value.key == "instances" and "a, b" in str(err.value) and "at most one node" in str(err.value)


def test_node_ip_not_among_its_addresses() -> None:
    sess, facts = guide()
    facts["n1"] = a2_facts("n1", "172.16.0.9", {6: "29.0.2.7", 7: "29.0.2.8"}, extra_addresses=["10.9.9.9"])
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    msg = str(err.value)
    assert err.value.key == "nodes[1].host"
    assert "node n1" in msg and "192.0.0.2" in msg and "172.16.0.9 10.9.9.9" in msg
    assert "fix: set ip to the address of n1" in msg


def test_node_holding_an_earlier_nodes_ip_would_take_its_identity() -> None:
    """The .sh picks the FIRST --ips entry among hostname -I (spec §1.3)."""
    sess, facts = guide()
    facts["n2"].addresses = ["192.0.0.1", "192.0.0.3"]  # e.g. a floating VIP of the prefill node
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    assert err.value.key == "nodes[2].host"
    assert "node n2 also holds 192.0.0.1 (the IP of node n0)" in str(err.value)
    # a LATER entry on the node is harmless: the first match is its own
    sess, facts = guide()
    facts["n0"].addresses = ["192.0.0.1", "192.0.0.3"]
    facts["n2"].addresses = ["192.0.0.3"]
    build_ranktable(sess, facts)


def test_missing_facts_missing_device_missing_address() -> None:
    sess, facts = guide()
    del facts["n2"]
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    assert err.value.key == "nodes[2]" and "n2" in str(err.value) and "discovery" in str(err.value)

    sess, facts = guide()
    facts["n1"].npus = [n for n in facts["n1"].npus if n.device != 7]
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    assert err.value.key == "instances[1].devices" and "node n1 has no NPU 7" in str(err.value)

    sess, facts = guide()
    facts["n2"].npu(6).ip = None
    with pytest.raises(InputError) as err:
        build_ranktable(sess, facts)
    assert err.value.key == "instances[2].devices"
    assert "node n2: NPU 6 has no RoCE IP" in str(err.value) and "hccn_tool -i 6 -ip" in str(err.value)


def test_a3_without_vnic_or_spod_and_unknown_or_mixed_soc() -> None:
    sess = session([("p", "10.0.0.1"), ("d", "10.0.0.2")], [("prefill", "p", [0]), ("decode", "d", [1])])
    facts = {"p": a3_facts("p", "10.0.0.1", index=1), "d": a3_facts("d", "10.0.0.2", index=2)}
    facts["d"].npu(1).vnic_ip = None
    with pytest.raises(InputError, match=r"node d: NPU 1 has no vNIC") as err:
        build_ranktable(sess, facts)
    assert err.value.key == "instances[1].devices"

    facts["d"] = a3_facts("d", "10.0.0.2", index=2)
    facts["d"].npu(1).sdid = None
    with pytest.raises(InputError, match=r"no SDID / Super Pod ID for NPU 1 .*spod-info -i 0 -c 1"):
        build_ranktable(sess, facts)

    facts["d"] = a2_facts("d", "10.0.0.2", {1: "29.0.2.2"})
    with pytest.raises(InputError, match=r"mix A2 and A3 \(A2: d; A3: p\)"):
        build_ranktable(sess, facts)

    facts["d"].soc = None
    with pytest.raises(InputError, match="node d: discovery could not tell A2 from A3") as err:
        build_ranktable(sess, facts)
    assert err.value.key == "nodes[1]"
