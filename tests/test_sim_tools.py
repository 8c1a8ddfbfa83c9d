"""The fake tools, called over real SSH, print the reference formats; every fault key shows."""

from __future__ import annotations

import asyncio
import os
import time

from pdwizard.sim import register_npu_processes, render, unregister_npu_processes


def lines(r) -> list[str]:
    return r.stdout.splitlines()


async def test_hccn_tool_healthy_node(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "h"}, {"name": "peer"})
    run = lambda cmd: sim_run(c, "h", cmd)  # noqa: E731
    r = await run("hccn_tool -i 0 -link -g")
    assert (r.stdout, r.stderr, r.exit_status) == ("link status: UP\n", "", 0)
    r = await run("hccn_tool -i 0 -ip -g")
    assert (r.stdout, r.stderr, r.exit_status) == ("ipaddr:29.0.1.1\nnetmask:255.255.0.0\n", "", 0)
    r = await run("for i in 0 1 2 3 4 5 6 7; do hccn_tool -i $i -ip -g; done")
    assert [ln for ln in lines(r) if ln.startswith("ipaddr:")] == [f"ipaddr:29.0.1.{i}" for i in range(1, 9)]
    r = await run("hccn_tool -i 5 -net_health -g")
    assert r.stdout == "net health status: Success\n"
    r = await run("hccn_tool -i 5 -netdetect -g")
    assert r.stdout == "netdetect address: 29.0.0.1\n"
    r = await run("hccn_tool -i 5 -gateway -g")
    assert r.stdout == "default gateway:29.0.0.1, Iface:eth5\n"
    r = await run("hccn_tool -i 3 -lldp -g | grep Ifname")
    assert r.stdout == "\tIfname: 400GE1/1/2:2\n"
    r = await run("hccn_tool -i 3 -lldp -g")
    assert r.stdout == render.hccn_lldp(c.node("h").facts, 3).stdout
    r = await run("hccn_tool -i 1 -tls -g | grep switch")
    assert "tls switch[0](0:disable, 1:enable)" in r.stdout
    r = await run("hccn_tool -i 1 -vnic -g")  # A2 hosts have a vNIC too
    assert lines(r)[0] == "vnic link status: UP" and lines(r)[1].startswith("vnic ipaddr: 192.168.")
    # ping: a peer NPU answers; same text as the pure renderer
    r = await run("hccn_tool -i 2 -ping -g address 29.0.2.7")
    assert (r.stdout, r.stderr, r.exit_status) == render.hccn_ping(2, "29.0.2.7", 3, True)
    assert lines(r)[-1] == "3 packets transmitted, 3 received, 0.00% packet loss"
    r = await run("hccn_tool -i 2 -ping -g address 29.0.2.7 pkt 5")
    assert lines(r)[-1] == "5 packets transmitted, 5 received, 0.00% packet loss" and len(lines(r)) == 7
    # an address no NPU holds times out: both streams, exit 1
    r = await run("hccn_tool -i 0 -ping -g address 10.10.100.22")
    assert (r.stdout, r.stderr, r.exit_status) == render.hccn_ping(0, "10.10.100.22", 3, False)
    assert r.stderr == "Command execute failed!\n" and r.exit_status == 1
    r = await run('cat "$PDWIZARD_HCCN_CONF"')
    assert r.stdout == render.hccn_conf(c.node("h").facts) and "address_0=29.0.1.1\n" in r.stdout


async def test_hccn_tool_fault_keys(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory(
        {"name": "f", "link_down": [3], "unhealthy": [5], "netdetect_unset": [1], "no_gateway": [2],
         "no_ip": [4], "no_lldp": [6], "hccn_conf_stale": [7], "tls": [1, 0, 0, 0, 0, 0, 0, 0],
         "ping_loss": ["29.0.2.7"], "net_health": {"0": "Socket fail"}},
        {"name": "peer", "link_down": [0]})
    run = lambda cmd: sim_run(c, "f", cmd)  # noqa: E731

    async def out(cmd):
        r = await run(cmd)
        return r.stdout, r.stderr, r.exit_status

    assert await out("hccn_tool -i 3 -link -g") == ("link status: DOWN\n", "", 0)
    assert await out("hccn_tool -i 3 -net_health -g") == ("net health status: Fault\n", "", 0)
    assert await out("hccn_tool -i 3 -lldp -g") == ("\n", "", 0)  # no neighbor on a down link
    assert await out("hccn_tool -i 5 -net_health -g") == ("net health status: Receive timeout\n", "", 0)
    assert await out("hccn_tool -i 0 -net_health -g") == ("net health status: Socket fail\n", "", 0)
    assert await out("hccn_tool -i 1 -netdetect -g") == ("netdetect address: 0.0.0.0\n", "", 0)
    assert await out("hccn_tool -i 1 -net_health -g") == ("net health status: Init\n", "", 0)
    assert await out("hccn_tool -i 2 -gateway -g") == (
        "", "Get gateway failed, because no gateway was preset there!\n", 2)
    assert await out("hccn_tool -i 4 -ip -g") == ("", "Get ipconf failed, because no ip was preset there!\n", 13)
    assert await out("hccn_tool -i 6 -lldp -g") == ("\n", "", 0)
    assert await out("hccn_tool -i 6 -link -g") == ("link status: UP\n", "", 0)
    assert (await out("hccn_tool -i 0 -tls -g"))[0].startswith("dev_id:0, tls switch[1](")
    assert (await out("hccn_tool -i 1 -tls -g"))[0].startswith("dev_id:1, tls switch[0](")
    conf = (await out('cat "$PDWIZARD_HCCN_CONF"'))[0]
    assert "address_7=29.100.1.8\n" in conf  # stale: differs from the live IP ...
    assert (await out("hccn_tool -i 7 -ip -g"))[0] == "ipaddr:29.0.1.8\nnetmask:255.255.0.0\n"  # ... which is this
    assert "address_4=" not in conf and "gateway_2=" not in conf and "netdetect_1=" not in conf
    # pings: ping_loss peer, a link_down source device, a link_down / no_ip target
    assert await out("hccn_tool -i 0 -ping -g address 29.0.2.7") == render.hccn_ping(0, "29.0.2.7", 3, False)
    assert (await out("hccn_tool -i 0 -ping -g address 29.0.2.6"))[2] == 0
    assert await out("hccn_tool -i 3 -ping -g address 29.0.2.6") == render.hccn_ping(3, "29.0.2.6", 3, False)
    assert (await out("hccn_tool -i 0 -ping -g address 29.0.2.1"))[2] == 1  # peer's device 0 is down
    r = await sim_run(c, "peer", "hccn_tool -i 1 -ping -g address 29.0.1.5")  # f's device 4 has no ip
    assert r.exit_status == 1 and "recv time out seq=0" in r.stdout


async def test_hccn_tool_argument_errors(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "e"})

    async def out(cmd):
        r = await sim_run(c, "e", cmd)
        return r.stdout, r.stderr, r.exit_status

    assert await out("hccn_tool -i 8 -link -g") == ("", "Get invalid device id.\n", 4)
    assert await out("hccn_tool -i x -link -g") == ("", "Get invalid device id.\n", 4)
    o, e, rc = await out("hccn_tool -i 0 -link -s")
    assert (e, rc) == ("Get unknown option!\n", 3) and o.startswith("[ hccn_tool -i devid -link ] needs")
    o, e, rc = await out("hccn_tool -i 0 -link -g extra")
    assert (e, rc) == ("The total count of input parameters is wrong!\n", 4) and "-link" in o
    o, e, rc = await out("hccn_tool -i 0 -frobnicate -g")
    assert rc == 3 and e.startswith("Get invalid major cmd.\n")
    assert (await out("hccn_tool"))[2] == 2
    assert (await out("hccn_tool -x"))[2] == 1
    assert await out("hccn_tool -i 0 -ping -g address not-an-ip") == (
        "", "The ip address you configured is invalid!\n", 6)
    assert (await out("hccn_tool -i 0 -ping -g"))[2] == 4
    assert (await out("hccn_tool -i 0 -ping -g address 29.0.1.2 pkt 0"))[2] == 1


async def test_busy_first_and_lock(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "b", "busy_first": 2}, {"name": "slow", "tool_delay_ms": 400})
    busy = ("hccn_tool is busy, please try again.\n", "", 11)
    for _ in range(2):
        r = await sim_run(c, "b", "hccn_tool -i 0 -link -g")
        assert (r.stdout, r.stderr, r.exit_status) == busy
    r = await sim_run(c, "b", "hccn_tool -i 0 -link -g")
    assert (r.stdout, r.exit_status) == ("link status: UP\n", 0)
    # a lock held by a live process: busy; held by a dead one: recovered
    lock = c.node("b").state_dir / "hccn.lock"
    lock.write_text(f"{os.getpid()}\n")
    r = await sim_run(c, "b", "hccn_tool -i 0 -link -g")
    assert (r.stdout, r.stderr, r.exit_status) == busy
    lock.write_text("999999999\n")
    r = await sim_run(c, "b", "hccn_tool -i 0 -link -g")
    assert r.exit_status == 0 and not lock.exists()
    # two overlapping calls on one node: the second answers busy
    slow_lock = c.node("slow").state_dir / "hccn.lock"
    first = asyncio.ensure_future(sim_run(c, "slow", "hccn_tool -i 0 -link -g"))
    deadline = time.monotonic() + 5
    while not slow_lock.exists():
        assert time.monotonic() < deadline, "first call never took the lock"
        await asyncio.sleep(0.01)
    r = await sim_run(c, "slow", "hccn_tool -i 1 -link -g")
    assert (r.stdout, r.stderr, r.exit_status) == busy
    r = await first
    assert (r.stdout, r.exit_status) == ("link status: UP\n", 0)
    assert not slow_lock.exists()


async def test_tool_delay(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "d", "tool_delay_ms": 150})
    await sim_run(c, "d", "true")
    t0 = time.monotonic()
    r = await sim_run(c, "d", "hccn_tool -i 0 -link -g; npu-smi info -l >/dev/null")
    assert r.exit_status == 0 and time.monotonic() - t0 >= 0.3


async def test_npu_smi_over_ssh(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "n", "npu_health": {"5": "Alarm"}, "busy_npus": [2],
                                   "driver_version": "24.1.0"},
                                  {"name": "v", "driver_version": "25.0.rc1.1", "chip_name": "910B4", "npus": 2})
    r = await sim_run(c, "n", "npu-smi info")
    out = lines(r)
    assert r.exit_status == 0 and r.stderr == ""
    assert out[1] == "| npu-smi 24.1.0                   Version: 24.1.0                                               |"
    assert out[3] == "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|"
    assert out[4] == "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"
    assert out[6].startswith("| 0     910B3               | OK            | ")
    assert [ln[:45] for ln in out if ln.startswith("| 5     ")] == ["| 5     910B3               | Alarm         |"]
    assert "| 2       0                 | 900020        | pt_main_thread           | 49207                   |" in out
    assert "No running processes found in NPU 2" not in r.stdout
    assert "| No running processes found in NPU 0                                                            |" in out
    assert all(len(ln) == 98 for ln in out)
    r = await sim_run(c, "v", "npu-smi info")
    assert lines(r)[1] == f"| npu-smi {'25.0.rc1.1':<24} Version: {'25.0.rc1.1':<53}|"
    assert lines(r)[6].startswith("| 0     910B4               | OK ") and "NPU 1 " in r.stdout and "NPU 2" not in r.stdout
    r = await sim_run(c, "v", "npu-smi info -t board -i 1; npu-smi info -m")
    assert "\tSoftware Version               : 25.0.rc1.1\n" in r.stdout and "Ascend 910B4" in r.stdout
    assert (await sim_run(c, "v", "hccn_tool -i 2 -link -g")).exit_status == 4
    r = await sim_run(c, "n", "npu-smi info -m")
    assert lines(r)[1].split() == ["0", "0", "0", "Ascend", "910B3"] and lines(r)[2].split() == ["0", "1", "-", "Mcu"]
    r = await sim_run(c, "n", "npu-smi info -l")
    assert r.stdout.startswith("\tTotal Count                    : 8\n\n")
    r = await sim_run(c, "n", "npu-smi info -t board -i 3")
    assert "\tPCI Device ID                  : 0xD802\n" in r.stdout and r.exit_status == 0
    r = await sim_run(c, "n", "npu-smi info -t spod-info -i 0 -c 0")
    assert (r.stdout, r.exit_status) == ("This device does not support querying spod-info.\n", 0)
    r = await sim_run(c, "n", "npu-smi info -t board -i 8")
    assert (r.stdout, r.stderr, r.exit_status) == ("Invalid card id.\nError parameter of -i\n", "", 215)
    # processes are read at call time: a registration shows up, and goes with its owner
    state = c.node("n").state_dir
    owner = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        register_npu_processes(state, "vllm-test", [{"npu": 6, "chip": 0, "pid": owner.pid, "name": "vllm",
                                                     "mem_mb": 1000}], owner_pid=owner.pid)
        r = await sim_run(c, "n", "npu-smi info")
        assert any(ln.startswith(f"| 6       0                 | {owner.pid:<13} | vllm ") for ln in lines(r))
    finally:
        owner.kill()
        await owner.wait()
    r = await sim_run(c, "n", "npu-smi info")
    assert "No running processes found in NPU 6" in r.stdout
    unregister_npu_processes(state, "vllm-test")
    assert not (state / "procs" / "vllm-test.json").exists()


async def test_a3_node(sim_cluster_factory, sim_run):
    sdids = [0x0A000000 + i for i in range(16)]
    vnic = [f"192.168.2.{199 - i}" for i in range(16)]
    c = await sim_cluster_factory({"name": "s", "soc": "A3", "super_pod_id": 7, "sdids": sdids,
                                   "server_index": 40, "vnic_ips": vnic, "npu_netmask": "255.255.255.0",
                                   "npu_gateway": "29.0.1.254"})
    r = await sim_run(c, "s", "npu-smi info")
    out = lines(r)
    assert out[4] == "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"
    assert out[6].startswith("| 0     Ascend910           | OK            | ")
    assert out[7].startswith("| 0     0                   | 0000:9D:00.0  |")
    assert out[8] == "+" + "-" * 96 + "+"
    assert out[9].startswith("| 0     Ascend910           | OK            | -           ")
    assert out[10].startswith("| 1     1                   | 0000:9F:00.0  |")
    r = await sim_run(c, "s", "npu-smi info -m")
    assert "Chip Phy-ID" in lines(r)[0] and lines(r)[-1].split() == ["7", "2", "-", "-", "Mcu"]
    r = await sim_run(c, "s", "npu-smi info -t spod-info -i 7 -c 1")
    assert r.stdout == ("\tSDID                           : 167772175\n\tSuper Pod Size                 : 384\n"
                        "\tSuper Pod ID                   : 7\n\tServer Index                   : 40\n")
    r = await sim_run(c, "s", "npu-smi info -t spod-info -i 15 -c 0")  # an id from 0..15 is not an NPU id
    assert (r.stdout, r.exit_status) == ("Invalid card id.\nError parameter of -i\n", 215)
    r = await sim_run(c, "s", "hccn_tool -i 15 -ip -g")
    assert r.stdout == "ipaddr:29.0.1.16\nnetmask:255.255.255.0\n"
    assert (await sim_run(c, "s", "hccn_tool -i 16 -ip -g")).exit_status == 4
    r = await sim_run(c, "s", "hccn_tool -i 15 -vnic -g")
    assert lines(r) == ["vnic link status: UP", "vnic ipaddr: 192.168.2.184", "vnic netmask: 255.255.255.0"]
    r = await sim_run(c, "s", "hccn_tool -i 15 -gateway -g; hccn_tool -i 15 -netdetect -g; hccn_tool -i 0 -ip -g")
    assert lines(r) == ["default gateway:29.0.1.254, Iface:eth15", "netdetect address: 29.0.1.254",
                        "ipaddr:29.0.1.1", "netmask:255.255.255.0"]
    # the two dies of one NPU are not RoCE-connected; other dies are
    assert (await sim_run(c, "s", "hccn_tool -i 2 -ping -g address 29.0.1.4")).exit_status == 1
    assert (await sim_run(c, "s", "hccn_tool -i 2 -ping -g address 29.0.1.5")).exit_status == 0


async def test_host_tools_and_environment(sim_cluster_factory, sim_run):
    c = await sim_cluster_factory({"name": "p1", "ip": "192.0.0.1", "extra_ips": ["10.9.0.5"],
                                   "cann_version": "8.1.RC1", "vllm_version": "0.9.2",
                                   "vllm_ascend_version": "0.9.2rc1"},
                                  {"name": "d1", "ip": "192.0.0.2", "nic": "enp189s0f0", "no_hccn_conf": True})
    r = await sim_run(c, "p1", "hostname; hostname -I")
    assert r.stdout == "p1\n192.0.0.1 10.9.0.5 \n"
    r = await sim_run(c, "p1", "ip -o -4 addr show")
    assert lines(r) == [
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
        "2: eth0    inet 192.0.0.1/24 brd 192.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever",
        "3: eth1    inet 10.9.0.5/24 brd 10.9.0.255 scope global eth1\\       valid_lft forever preferred_lft forever",
    ]
    r = await sim_run(c, "d1", "ip -o addr")
    assert "1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever" in lines(r)
    assert "2: enp189s0f0    inet 192.0.0.2/24 brd 192.0.0.255 scope global enp189s0f0\\" in r.stdout
    r = await sim_run(c, "d1", "ip addr show dev enp189s0f0")
    assert lines(r)[0].startswith("2: enp189s0f0: <BROADCAST") and "    inet 192.0.0.2/24 " in r.stdout
    r = await sim_run(c, "d1", "ip addr show dev nope")
    assert r.exit_status == 1 and r.stderr == 'Device "nope" does not exist.\n'
    r = await sim_run(c, "d1", 'cat "$PDWIZARD_HCCN_CONF"')
    assert r.exit_status != 0  # no_hccn_conf
    r = await sim_run(c, "p1", 'cat "$ASCEND_TOOLKIT_HOME"/aarch64-linux/ascend_toolkit_install.info')
    assert "version=8.1.RC1\n" in r.stdout
    r = await sim_run(c, "p1", "python3 -c 'import importlib.metadata as m; print(m.version(\"vllm\"), "
                               "m.version(\"vllm_ascend\"), m.version(\"vllm-ascend\"))'")
    assert r.stdout == "0.9.2 0.9.2rc1 0.9.2rc1\n"
    r = await sim_run(c, "p1", 'echo "$SIMULATED|$HOME|$PWD|${PATH%%:*}|$PDWIZARD_SIM_NODE"; echo hi > ~/f; cat ~/f')
    simulated, home, pwd, path0, state = lines(r)[0].split("|")
    n = c.node("p1")
    assert (simulated, home, pwd, path0, state) == ("1", str(n.home), str(n.home), str(n.bin_dir), str(n.state_dir))
    assert lines(r)[1] == "hi" and (n.home / "f").read_text() == "hi\n"
    r = await sim_run(c, "d1", "test -e ~/f && echo shared || echo separate; echo $HOME")
    assert lines(r) == ["separate", str(c.node("d1").home)]
    assert c.node_home(n.host, n.port) == n.home and c.node_home(n.host, 0) == n.home
