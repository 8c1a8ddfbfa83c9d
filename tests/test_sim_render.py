"""The simulator's renderers reproduce the reference formats (ascend-tool-outputs.md) byte for byte."""

from __future__ import annotations

import copy
import re

from pdwizard.sim import render
from pdwizard.sim.spec import node_facts, spec_from_dict

# Verbatim lines of ascend-tool-outputs.md (sections 10.1 and 10.2).
REF_A2 = [
    "+------------------------------------------------------------------------------------------------+",
    "| npu-smi 24.1.0                   Version: 24.1.0                                               |",
    "+---------------------------+---------------+----------------------------------------------------+",
    "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
    "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |",
    "+===========================+===============+====================================================+",
    "| 0     910B1               | OK            | 100.4       50                0    / 0             |",
    "| 0                         | 0000:C1:00.0  | 0           0    / 0          3395 / 65536         |",
    "+===========================+===============+====================================================+",
]
REF_A2_PROCS = [
    "+---------------------------+---------------+----------------------------------------------------+",
    "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |",
    "+===========================+===============+====================================================+",
    "| No running processes found in NPU 0                                                            |",
    "+===========================+===============+====================================================+",
]
REF_A3 = [
    "| npu-smi 24.1.rc3.3               Version: 24.1.rc3.3                                           |",
    "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |",
    "| 0     Ascend910           | OK            | 182.0       36                0    / 0             |",
    "| 0     0                   | 0000:9D:00.0  | 0           0    / 0          3402 / 65536         |",
    "+------------------------------------------------------------------------------------------------+",
    "| 0     Ascend910           | OK            | -           35                0    / 0             |",
    "| 1     1                   | 0000:9F:00.0  | 0           0    / 0          3200 / 65536         |",
    "| 4       0                 | 957687        | pt_main_thread           | 49207                   |",
    "| 4       1                 | 957770        | pt_main_thread           | 49207                   |",
]


def facts(**node) -> dict:
    node.setdefault("host", "127.0.1.1")
    return node_facts(spec_from_dict({"node": [node]}), 0)


def test_npu_smi_info_a2_matches_reference_lines():
    f = facts(chip_name="910B1")
    f["chip"][0].update(power=100.4, temp=50, hbm_used=3395)
    lines = render.npu_smi_info(f, []).splitlines()
    assert lines[:9] == REF_A2
    start = lines.index(REF_A2_PROCS[1]) - 1
    assert lines[start:start + 5] == REF_A2_PROCS
    assert len([ln for ln in lines if ln.startswith("| No running processes found in NPU")]) == 8
    assert all(len(ln) == 98 for ln in lines)


def test_npu_smi_info_a3_matches_reference_lines():
    f = facts(soc="A3", driver_version="24.1.rc3.3")
    f["chip"][0].update(power=182.0, temp=36, hbm_used=3402)
    f["chip"][1].update(temp=35, hbm_used=3200)
    procs = [{"npu": 4, "chip": 0, "pid": 957687, "name": "pt_main_thread", "mem_mb": 49207},
             {"npu": 4, "chip": 1, "pid": 957770, "name": "pt_main_thread", "mem_mb": 49207}]
    text = render.npu_smi_info(f, procs)
    lines = text.splitlines()
    for ref in REF_A3:
        assert ref in lines, ref
    # die 0 / die 1 of one NPU are split by a dashed line, NPUs by a double line
    i = lines.index(REF_A3[3])
    assert lines[i + 1] == REF_A3[4] and lines[i + 4].startswith("+====")
    # used HBM includes the process memory and may touch the slash (%-5d/)
    assert any(ln.startswith("| 0     8   ") and re.search(r" 5\d{4}/ 65536 ", ln) for ln in lines)
    assert "No running processes found in NPU 4" not in text
    assert all(len(ln) == 98 for ln in lines)


def test_npu_smi_info_m_and_l_formats():
    a2 = render.npu_smi_info_m(facts()).splitlines()
    assert a2[0] == ("\tNPU ID                         Chip ID                        Chip Logic ID"
                     "                  Chip Name                     ")
    assert a2[1] == "\t0                              0                              0                              Ascend 910B3"
    assert a2[2] == ("\t0                              1                              -                              "
                     "Mcu                           ")
    a3 = render.npu_smi_info_m(facts(soc="A3")).splitlines()
    assert "Chip Phy-ID" in a3[0]
    assert a3[2].split() == ["0", "1", "1", "1", "Ascend910"]
    assert a3[3].split() == ["0", "2", "-", "-", "Mcu"]
    assert a3[4].split() == ["1", "0", "2", "2", "Ascend910"]
    text = render.npu_smi_info_l(facts())
    assert text.startswith("\tTotal Count                    : 8\n\n\tNPU ID                         : 0\n"
                           "\tChip Count                     : 1\n\n")
    assert "\tChip Count                     : 2\n" in render.npu_smi_info_l(facts(soc="A3"))


def test_spod_info_and_board():
    out = render.npu_smi_spod(facts(soc="A3", server_index=40, super_pod_id=0, sdids=[40 << 22] * 16), 0, 0)
    assert out == ("\tSDID                           : 167772160\n\tSuper Pod Size                 : 384\n"
                   "\tSuper Pod ID                   : 0\n\tServer Index                   : 40\n", "", 0)
    assert render.npu_smi_spod(facts(), 0, 0) == ("This device does not support querying spod-info.\n", "", 0)
    board = render.npu_smi_board(facts(), 0)
    assert "\tPCI Device ID                  : 0xD802\n" in board
    assert "\tChip Count                     : 1\n" in board
    assert "\tPCI Device ID                  : 0xD803\n" in render.npu_smi_board(facts(soc="A3"), 0)


def test_npu_smi_dispatch_errors():
    f = facts()
    assert render.npu_smi(f, ["info", "-t", "board", "-i", "8"], []) == \
        ("Invalid card id.\nError parameter of -i\n", "", 215)
    assert render.npu_smi(f, ["info", "-t", "spod-info", "-i", "x", "-c", "0"], []).exit_status == 215
    assert render.npu_smi(f, ["info", "-t", "spod-info", "-i", "0", "-c", "1"], []).exit_status == 215
    a3 = facts(soc="A3")
    assert render.npu_smi(a3, ["info", "-t", "spod-info", "-i", "7", "-c", "1"], []).exit_status == 0
    assert render.npu_smi(a3, ["info", "-t", "spod-info", "-i", "15", "-c", "0"], []).exit_status == 215


def test_hccn_formats():
    f = facts()
    assert render.hccn_get(f, 0, "link") == ("link status: UP\n", "", 0)
    assert render.hccn_get(f, 0, "ip") == ("ipaddr:29.0.1.1\nnetmask:255.255.0.0\n", "", 0)
    assert render.hccn_get(f, 7, "gateway") == ("default gateway:29.0.0.1, Iface:eth7\n", "", 0)
    assert render.hccn_get(f, 0, "net_health") == ("net health status: Success\n", "", 0)
    assert render.hccn_get(f, 0, "netdetect") == ("netdetect address: 29.0.0.1\n", "", 0)
    assert render.hccn_get(f, 2, "tls").stdout == (
        "dev_id:2, tls switch[0](0:disable, 1:enable), tls preconfigured[1](0:non-preset, 1:preset), "
        "tls alarm time threshold[60]days\n")
    lldp = render.hccn_get(f, 3, "lldp").stdout
    assert "\tIfname: 400GE1/1/2:2\n" in lldp and lldp.endswith("End of LLDPDU TLV\n")
    assert "\n\nHuarong DX511\n\n" in lldp  # multi-line System Description with blank lines


def test_hccn_ping_format():
    ok = render.hccn_ping(3, "29.1.137.205", 3, True)
    assert ok.stdout.splitlines()[0] == "device 3 PING 29.1.137.205"
    assert ok.stdout.splitlines()[-1] == "3 packets transmitted, 3 received, 0.00% packet loss"
    assert ok.stdout.splitlines()[1].startswith("recv seq=0,time=1.") and ok.exit_status == 0
    bad = render.hccn_ping(0, "10.10.100.22", 3, False)
    assert bad == ("device 0 PING 10.10.100.22\nrecv time out seq=0\nrecv time out seq=1\nrecv time out seq=2\n"
                   "3 packets transmitted, 0 received, 100.00% packet loss\n", "Command execute failed!\n", 1)


def test_hccn_conf_format_and_faults():
    f = facts(no_ip=[1], no_gateway=[2], netdetect_unset=[3], hccn_conf_stale=[4])
    conf = render.hccn_conf(f)
    assert conf.startswith("address_0=29.0.1.1\nnetmask_0=255.255.0.0\nnetdetect_0=29.0.0.1\n"
                           "gateway_0=29.0.0.1\nsend_arp_status_0=1\n")
    assert "address_1=" not in conf and "gateway_2=" not in conf and "netdetect_3=" not in conf
    assert "address_4=29.100.1.5\n" in conf
    assert render.hccn_get(f, 4, "ip").stdout == "ipaddr:29.0.1.5\nnetmask:255.255.0.0\n"


def test_host_tools():
    f = facts(ip="192.0.0.1", extra_ips=["10.1.0.5"])
    assert render.hostname_i(f) == "192.0.0.1 10.1.0.5 \n"
    assert render.ip_addr(f, oneline=True, family="4").splitlines() == [
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
        "2: eth0    inet 192.0.0.1/24 brd 192.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever",
        "3: eth1    inet 10.1.0.5/24 brd 10.1.0.255 scope global eth1\\       valid_lft forever preferred_lft forever",
    ]
    assert "inet6 ::1/128" in render.ip_addr(f, oneline=True, family=None)


def test_facts_are_json_and_pure():
    f = facts(soc="A3")
    before = copy.deepcopy(f)
    render.npu_smi_info(f, [])
    assert f == before
    import json
    assert json.loads(json.dumps(f)) == f
