"""The fake tools' output, in the real tools' formats (pure functions, no I/O).

Every format here follows ``ascend-tool-outputs.md`` (verbatim captures and the
open-sourced tool format strings). Nothing in a tool's output says SIMULATED: the
parsers must be tested against the real shapes. The marker lives in the SSH banner
and the foreground CLI instead.

Inputs are *facts*: a plain JSON-able dict per node built by
:func:`pdwizard.sim.spec.node_facts` (the cluster writes it to ``<state>/facts.json``;
the fake ``npu-smi`` reads it back). This module imports only the standard library
and nothing heavy, because the fake ``npu-smi`` imports it on every call.

Facts keys used here::

    name, ip, nic, extra_ips, soc ("A2"/"A3"), npus, chips, chip_name,
    driver_version, firmware_version, npu_health [per NPU], super_pod_id,
    super_pod_size, server_index, index (node position in the spec),
    chip: [per physical device id {phy, npu, chip, bus_id, power (float|None),
           temp, hbm_used, hbm_total, ip, netmask, gateway, netdetect, link_up,
           net_health, has_ip, has_gateway, netdetect_set, lldp, lldp_port,
           conf_address, tls, vnic_ip, sdid}]

Processes (``npu-smi info``) are a list of dicts ``{npu, chip, pid, name, mem_mb}``.
"""

from __future__ import annotations


class ToolOutput(tuple):
    """What one tool call prints on stdout and stderr, and its exit status.

    A plain tuple ``(stdout, stderr, exit_status)`` with names (not a namedtuple: importing
    collections would slow every fake npu-smi call down).
    """

    __slots__ = ()

    def __new__(cls, stdout: str, stderr: str, exit_status: int) -> ToolOutput:
        return tuple.__new__(cls, (stdout, stderr, exit_status))

    @property
    def stdout(self) -> str:
        return self[0]

    @property
    def stderr(self) -> str:
        return self[1]

    @property
    def exit_status(self) -> int:
        return self[2]

    def __repr__(self) -> str:
        return f"ToolOutput(stdout={self[0]!r}, stderr={self[1]!r}, exit_status={self[2]!r})"

# --------------------------------------------------------------------------- hccn_tool

HCCN_BUSY = ToolOutput("hccn_tool is busy, please try again.\n", "", 11)
HCCN_INVALID_DEVICE = ToolOutput("", "Get invalid device id.\n", 4)
HCCN_EXEC_FAILED = "Command execute failed!\n"

#: hccn_tool commands the simulator answers, with the help lines printed after
#: "Get unknown option!" / "The total count of input parameters is wrong!".
HCCN_HELP = {
    "-ip": "   [-g]                 : get ip address and netmask/prefix_length \n",
    "-gateway": "   [-g]                : get gateway address \n",
    "-netdetect": "   [-g]                : get net detect cfg \n",
    "-lldp": "   [-g]        : get lldp cfg \n",
    "-link": "   [-g]                   : get the eth ports link status, UP or DOWN \n",
    "-net_health": "   [-g]        : get net health status\n",
    "-tls": "   [-g]        : get tls cfg\n",
    "-vnic": "   [-g]        : get vnic link status, ip address and netmask \n",
    "-ping": "   [-g]        : ping the address\n"
             "       address %s : destination IPv4 address, such as x.x.x.x\n"
             "       [pkt %d]   : packet count, default 3\n",
}

#: the `hccn_tool -i N <cmd> -g` answers precomputed per device (ping is computed per call)
HCCN_GET_COMMANDS = ("lldp", "link", "net_health", "netdetect", "gateway", "ip", "vnic", "tls")

NET_HEALTH_VALUES = ("Success", "Socket fail", "Receive timeout", "Unreachable", "Time exceeded",
                     "Fault", "Init", "Thread error", "Detect ip set", "Unknown")


def hccn_param_list(cmd: str) -> str:
    """The usage block hccn_tool prints on stdout after a parameter error."""
    return f"[ hccn_tool -i devid {cmd} ] needs the following parameters:\n{HCCN_HELP.get(cmd, '')}\n"


def hccn_unknown_option(cmd: str) -> ToolOutput:
    return ToolOutput(hccn_param_list(cmd), "Get unknown option!\n", 3)


def hccn_count_error(cmd: str) -> ToolOutput:
    return ToolOutput(hccn_param_list(cmd), "The total count of input parameters is wrong!\n", 4)


def hccn_lldp(facts: dict, phy: int) -> ToolOutput:
    """lldpad-style TLV dump; TAB-indented values; empty (one blank line) without a neighbor."""
    c = facts["chip"][phy]
    if not c["lldp"] or not c["link_up"]:
        return ToolOutput("\n", "", 0)
    sw = facts["index"] % 4 + 1
    text = (
        "Chassis ID TLV\n"
        f"\tMAC: 5c:e7:47:1a:0{sw}:{facts['index'] % 256:02x}\n"
        "Port ID TLV\n"
        f"\tIfname: {c['lldp_port']}\n"
        "System Name TLV\n"
        f"\tleaf-{sw:02d}\n"
        "System Description TLV\n"
        "\tVersatile Routing Platform Software\n"
        "VRP (R) software, Version 8.211 (DX511 V200R021C10SPC600)\n"
        "\n"
        "Huarong DX511\n"
        "\n"
        "System Capabilities TLV\n"
        "\tEnabled capabilities: Bridge, Router\n"
        "Management Address TLV\n"
        f"\tIPv4: 26.1.{sw}.1\n"
        "Maximum Frame Size TLV\n"
        "\t9216\n"
        "End of LLDPDU TLV\n"
    )
    return ToolOutput(text, "", 0)


def hccn_link(facts: dict, phy: int) -> ToolOutput:
    return ToolOutput(f"link status: {'UP' if facts['chip'][phy]['link_up'] else 'DOWN'}\n", "", 0)


def hccn_net_health(facts: dict, phy: int) -> ToolOutput:
    return ToolOutput(f"net health status: {facts['chip'][phy]['net_health']}\n", "", 0)


def hccn_netdetect(facts: dict, phy: int) -> ToolOutput:
    c = facts["chip"][phy]
    addr = c["netdetect"] if c["netdetect_set"] else "0.0.0.0"
    return ToolOutput(f"netdetect address: {addr}\n", "", 0)


def hccn_gateway(facts: dict, phy: int) -> ToolOutput:
    c = facts["chip"][phy]
    if not c["has_gateway"]:
        return ToolOutput("", "Get gateway failed, because no gateway was preset there!\n", 2)
    return ToolOutput(f"default gateway:{c['gateway']}, Iface:eth{phy}\n", "", 0)


def hccn_ip(facts: dict, phy: int) -> ToolOutput:
    c = facts["chip"][phy]
    if not c["has_ip"]:
        return ToolOutput("", "Get ipconf failed, because no ip was preset there!\n", 13)
    return ToolOutput(f"ipaddr:{c['ip']}\nnetmask:{c['netmask']}\n", "", 0)


def hccn_vnic(facts: dict, phy: int) -> ToolOutput:
    c = facts["chip"][phy]
    return ToolOutput(
        f"vnic link status: UP\nvnic ipaddr: {c['vnic_ip']}\nvnic netmask: 255.255.255.0\n", "", 0)


def hccn_tls(facts: dict, phy: int) -> ToolOutput:
    c = facts["chip"][phy]
    return ToolOutput(
        f"dev_id:{phy}, tls switch[{c['tls']}](0:disable, 1:enable), tls preconfigured[1](0:non-preset, "
        "1:preset), tls alarm time threshold[60]days\n", "", 0)


_HCCN_RENDER = {
    "lldp": hccn_lldp, "link": hccn_link, "net_health": hccn_net_health,
    "netdetect": hccn_netdetect, "gateway": hccn_gateway, "ip": hccn_ip,
    "vnic": hccn_vnic, "tls": hccn_tls,
}


def hccn_get(facts: dict, phy: int, command: str) -> ToolOutput:
    """`hccn_tool -i PHY -COMMAND -g` for one of HCCN_GET_COMMANDS."""
    return _HCCN_RENDER[command](facts, phy)


def ping_time_us(phy: int, seq: int) -> int:
    """Deterministic round-trip time in microseconds (the sh tool computes the same)."""
    if seq == 0:
        return 1400 + phy * 3
    return 30 + (seq * 7 + phy * 3) % 40


def hccn_ping(phy: int, address: str, count: int, reachable: bool) -> ToolOutput:
    """`hccn_tool -i PHY -ping -g address ADDRESS [pkt COUNT]`."""
    lines = [f"device {phy} PING {address}"]
    for seq in range(count):
        if reachable:
            us = ping_time_us(phy, seq)
            lines.append(f"recv seq={seq},time={us // 1000}.{us % 1000:03d}000ms")
        else:
            lines.append(f"recv time out seq={seq}")
    if reachable:
        lines.append(f"{count} packets transmitted, {count} received, 0.00% packet loss")
        return ToolOutput("\n".join(lines) + "\n", "", 0)
    lines.append(f"{count} packets transmitted, 0 received, 100.00% packet loss")
    return ToolOutput("\n".join(lines) + "\n", HCCN_EXEC_FAILED, 1)


def hccn_conf(facts: dict) -> str:
    """/etc/hccn.conf as `hccn_tool ... -s` writes it: name_<phyid>=value lines."""
    out = []
    for c in facts["chip"]:
        i = c["phy"]
        if c["has_ip"]:
            out.append(f"address_{i}={c['conf_address']}")
            out.append(f"netmask_{i}={c['netmask']}")
        if c["netdetect_set"]:
            out.append(f"netdetect_{i}={c['netdetect']}")
        if c["has_gateway"]:
            out.append(f"gateway_{i}={c['gateway']}")
        out.append(f"send_arp_status_{i}=1")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- npu-smi

NPU_SMI_INVALID_CARD = ToolOutput("Invalid card id.\nError parameter of -i\n", "", 215)
NPU_SMI_INVALID_CHIP = ToolOutput("Invalid chip id.\nError parameter of -c\n", "", 215)

_BAR = "+" + "-" * 96 + "+"
_SPLIT = "+---------------------------+---------------+----------------------------------------------------+"
_DOUBLE = "+===========================+===============+====================================================+"

A2_BUS_IDS = ("0000:C1:00.0", "0000:01:00.0", "0000:C2:00.0", "0000:02:00.0",
              "0000:81:00.0", "0000:41:00.0", "0000:82:00.0", "0000:42:00.0")
A3_BUS_IDS = ("0000:9D:00.0", "0000:9F:00.0", "0000:99:00.0", "0000:9B:00.0",
              "0000:95:00.0", "0000:97:00.0", "0000:91:00.0", "0000:93:00.0",
              "0000:8D:00.0", "0000:8F:00.0", "0000:89:00.0", "0000:8B:00.0",
              "0000:85:00.0", "0000:87:00.0", "0000:81:00.0", "0000:83:00.0")


def _row(text: str) -> str:
    return f"| {text:<95}|"


def npu_smi_info(facts: dict, processes: list[dict]) -> str:
    """The big `npu-smi info` table (classic layout) plus the process table."""
    a3 = facts["soc"] == "A3"
    v = facts["driver_version"]
    used: dict[tuple[int, int], int] = {}
    for p in processes:
        key = (p["npu"], p["chip"])
        used[key] = used.get(key, 0) + int(p.get("mem_mb") or 0)
    lines = [
        _BAR,
        f"| npu-smi {v:<24} Version: {v:<53}|",
        _SPLIT,
        "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
        ("| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"
         if a3 else
         "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"),
        _DOUBLE,
    ]
    name = facts["chip_name"]
    for npu in range(facts["npus"]):
        chips = [c for c in facts["chip"] if c["npu"] == npu]
        health = facts["npu_health"][npu]
        for k, c in enumerate(chips):
            power = "-" if c["power"] is None else f"{c['power']:.1f}"
            lines.append(f"| {npu:<5} {name:<20}| {health:<13} | {power:<11} {c['temp']:<17} "
                         f"{0:<5}/ {0:<13} |")
            hbm = min(c["hbm_total"], c["hbm_used"] + used.get((npu, c["chip"]), 0))
            first = f"{c['chip']:<5} {c['phy']:<20}" if a3 else f"{c['chip']:<26}"
            lines.append(f"| {first}| {c['bus_id']:<13} | {0:<11} {0:<5}/ {0:<10} "
                         f"{hbm:<5}/ {c['hbm_total']:<13} |")
            lines.append(_BAR if k < len(chips) - 1 else _DOUBLE)
    lines += [
        _SPLIT,
        "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |",
        _DOUBLE,
    ]
    for npu in range(facts["npus"]):
        rows = sorted((p for p in processes if p["npu"] == npu), key=lambda p: (p["chip"], p["pid"]))
        if not rows:
            lines.append(_row(f"No running processes found in NPU {npu}"))
        for p in rows:
            lines.append(f"| {p['npu']:<7} {p['chip']:<18}| {p['pid']:<13} | {p.get('name') or '':<24} | "
                         f"{int(p.get('mem_mb') or 0):<24}|")
        lines.append(_DOUBLE)
    return "\n".join(lines) + "\n"


def npu_smi_info_m(facts: dict) -> str:
    """`npu-smi info -m`: NPU/chip <-> logic id mapping, with the MCU rows."""
    a3 = facts["soc"] == "A3"
    if a3:
        out = [f"\t{'NPU ID':<30} {'Chip ID':<30} {'Chip Logic ID':<30} {'Chip Phy-ID':<30} {'Chip Name':<30}"]
    else:
        out = [f"\t{'NPU ID':<30} {'Chip ID':<30} {'Chip Logic ID':<30} {'Chip Name':<30}"]
    for npu in range(facts["npus"]):
        chips = [c for c in facts["chip"] if c["npu"] == npu]
        for c in chips:
            if a3:
                out.append(f"\t{npu:<30} {c['chip']:<30} {c['phy']:<30} {c['phy']:<30} {facts['chip_name']}")
            else:
                out.append(f"\t{npu:<30} {c['chip']:<30} {c['phy']:<30} Ascend {facts['chip_name']}")
        mcu = len(chips)
        if a3:
            out.append(f"\t{npu:<30} {mcu:<30} {'-':<30} {'-':<30} {'Mcu':<30}")
        else:
            out.append(f"\t{npu:<30} {mcu:<30} {'-':<30} {'Mcu':<30}")
    return "\n".join(out) + "\n"


def npu_smi_info_l(facts: dict) -> str:
    """`npu-smi info -l`: TAB-indented key/value blocks separated by blank lines."""
    per = 2 if facts["soc"] == "A3" else 1
    out = f"\t{'Total Count':<30} : {facts['npus']}\n\n"
    for npu in range(facts["npus"]):
        out += f"\t{'NPU ID':<30} : {npu}\n\t{'Chip Count':<30} : {per}\n\n"
    return out


def _kv(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"\t{k:<30} : {v}\n" for k, v in pairs)


def npu_smi_board(facts: dict, npu: int) -> str:
    """`npu-smi info -t board -i NPU` (card view)."""
    a3 = facts["soc"] == "A3"
    chip0 = [c for c in facts["chip"] if c["npu"] == npu][0]
    serial = f"1025C9{(facts['index'] * 16 + npu) % 1000000:06d}"
    return _kv([
        ("NPU ID", npu),
        ("Product Name", "IT21PDDA01" if a3 else "IT21HMDC_Bin5"),
        ("Model", "NA"),
        ("Manufacturer", "Huawei"),
        ("Serial Number", serial),
        ("Software Version", facts["driver_version"]),
        ("Firmware Version", facts["firmware_version"]),
        ("Compatibility", "OK"),
        ("Board ID", "0x60"),
        ("PCB ID", "A"),
        ("BOM ID", 1),
        ("PCIe Bus Info", chip0["bus_id"]),
        ("Slot ID", npu),
        ("Class ID", "NA"),
        ("PCI Vendor ID", "0x19E5"),
        ("PCI Device ID", "0xD803" if a3 else "0xD802"),
        ("Subsystem Vendor ID", "0x19E5"),
        ("Subsystem Device ID", "0x3003"),
        ("Chip Count", 2 if a3 else 1),
    ])


def npu_smi_board_chip(facts: dict, npu: int, chip: int) -> str:
    """`npu-smi info -t board -i NPU -c CHIP` (chip view)."""
    a3 = facts["soc"] == "A3"
    return _kv([
        ("NPU ID", npu),
        ("Chip ID", chip),
        ("Chip Type", "Ascend"),
        ("Chip Name", facts["chip_name"]),
        ("Chip Version", "V1"),
        ("Board ID", "0x60"),
        ("PCB ID", "A"),
        ("BOM ID", 1),
        ("VDie ID", f"{0x1A2B3C4D + facts['index'] * 32 + npu * 2 + chip:08X}"),
        ("NDie ID", "NA" if a3 else f"{0x5E6F7081 + facts['index'] * 32 + npu:08X}"),
        ("Chip Position ID", chip),
    ])


def npu_smi_spod(facts: dict, npu: int, chip: int) -> ToolOutput:
    """`npu-smi info -t spod-info -i NPU -c CHIP` (A3 only)."""
    if facts["soc"] != "A3":
        return ToolOutput("This device does not support querying spod-info.\n", "", 0)
    c = [c for c in facts["chip"] if c["npu"] == npu and c["chip"] == chip][0]
    return ToolOutput(_kv([
        ("SDID", c["sdid"]),
        ("Super Pod Size", facts["super_pod_size"]),
        ("Super Pod ID", facts["super_pod_id"]),
        ("Server Index", facts["server_index"]),
    ]), "", 0)


NPU_SMI_USAGE = (
    "Usage: npu-smi [info|set|clear|upgrade|...] [-h]\n"
    "       npu-smi info\n"
    "       npu-smi info -m\n"
    "       npu-smi info -l\n"
    "       npu-smi info -t <type> -i <id> [-c <chip_id>]\n"
)


def _int_arg(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def npu_smi(facts: dict, argv: list[str], processes: list[dict]) -> ToolOutput:
    """The whole fake `npu-smi` for argv (without the program name)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        return ToolOutput(NPU_SMI_USAGE, "", 0 if argv else 215)
    if argv[0] == "-v":
        return ToolOutput(f"npu-smi version: {facts['driver_version']}\n", "", 0)
    if argv[0] != "info":
        return ToolOutput(f"Invalid command: {argv[0]}\n{NPU_SMI_USAGE}", "", 215)
    rest = argv[1:]
    if not rest:
        return ToolOutput(npu_smi_info(facts, processes), "", 0)
    if rest == ["-m"]:
        return ToolOutput(npu_smi_info_m(facts), "", 0)
    if rest == ["-l"]:
        return ToolOutput(npu_smi_info_l(facts), "", 0)
    opts: dict[str, str] = {}
    it = iter(rest)
    for flag in it:
        if flag not in ("-t", "-i", "-c") or flag in opts:
            return ToolOutput(f"Invalid parameter: {flag}\n{NPU_SMI_USAGE}", "", 215)
        value = next(it, None)
        if value is None:
            return ToolOutput(f"Error parameter of {flag}\n", "", 215)
        opts[flag] = value
    kind = opts.get("-t")
    if kind not in ("board", "spod-info"):
        return ToolOutput("Error parameter of -t\n", "", 215)
    npu = _int_arg(opts.get("-i"))
    if npu is None or npu >= facts["npus"]:
        return NPU_SMI_INVALID_CARD
    chips = 2 if facts["soc"] == "A3" else 1
    if "-c" in opts:
        chip = _int_arg(opts["-c"])
        if chip is None or chip >= chips:
            return NPU_SMI_INVALID_CHIP
    else:
        chip = None
    if kind == "board":
        if chip is None:
            return ToolOutput(npu_smi_board(facts, npu), "", 0)
        return ToolOutput(npu_smi_board_chip(facts, npu, chip), "", 0)
    if facts["soc"] != "A3":
        return npu_smi_spod(facts, npu, 0)
    if chip is None:
        return NPU_SMI_INVALID_CHIP
    return npu_smi_spod(facts, npu, chip)


# --------------------------------------------------------------------------- host tools

def _interfaces(facts: dict) -> list[tuple[int, str, str]]:
    """(index, name, ipv4) of the node's interfaces after lo: the nic, then one per extra ip."""
    out = [(2, facts["nic"], facts["ip"])]
    k = 0
    for n, extra in enumerate(facts.get("extra_ips", [])):
        while f"eth{k}" == facts["nic"]:
            k += 1
        out.append((3 + n, f"eth{k}", extra))
        k += 1
    return out


def _brd(ip: str) -> str:
    return ".".join(ip.split(".")[:3] + ["255"])


def _mac(facts: dict, ifindex: int) -> str:
    return f"52:54:00:{facts['index'] % 256:02x}:{ifindex:02x}:01"


def hostname_i(facts: dict) -> str:
    """`hostname -I`: every address, space separated, with the real tool's trailing space."""
    return "".join(a + " " for a in [facts["ip"], *facts.get("extra_ips", [])]) + "\n"


def ip_addr(facts: dict, *, oneline: bool, family: str | None) -> str:
    """`ip [-o] [-4|-6] addr show` for lo, the node's nic and its extra addresses."""
    v4 = family in (None, "4")
    v6 = family in (None, "6")
    tail = "\\       valid_lft forever preferred_lft forever" if oneline else \
        "\n       valid_lft forever preferred_lft forever"
    out: list[str] = []
    if oneline:
        if v4:
            out.append(f"1: lo    inet 127.0.0.1/8 scope host lo{tail}")
        if v6:
            out.append(f"1: lo    inet6 ::1/128 scope host {tail}")
        for idx, name, ip in _interfaces(facts):
            if v4:
                out.append(f"{idx}: {name}    inet {ip}/24 brd {_brd(ip)} scope global {name}{tail}")
        return "".join(line + "\n" for line in out)
    out.append("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000")
    if family is None:
        out.append("    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00")
    if v4:
        out.append(f"    inet 127.0.0.1/8 scope host lo{tail}")
    if v6:
        out.append(f"    inet6 ::1/128 scope host {tail}")
    for idx, name, ip in _interfaces(facts):
        out.append(f"{idx}: {name}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP "
                   "group default qlen 1000")
        if family is None:
            out.append(f"    link/ether {_mac(facts, idx)} brd ff:ff:ff:ff:ff:ff")
        if v4:
            out.append(f"    inet {ip}/24 brd {_brd(ip)} scope global {name}{tail}")
    return "".join(line + "\n" for line in out)


def ip_link(facts: dict, *, oneline: bool) -> str:
    """`ip [-o] link`: lo and the node's interfaces."""
    sep = "\\" if oneline else "\n"
    out = ["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default "
           f"qlen 1000{sep}    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"]
    for idx, name, _ip in _interfaces(facts):
        out.append(f"{idx}: {name}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT "
                   f"group default qlen 1000{sep}    link/ether {_mac(facts, idx)} brd ff:ff:ff:ff:ff:ff")
    return "".join(line + "\n" for line in out)


def ip_route_get(facts: dict) -> str:
    """`gateway nic src` for the fake `ip route get` (one line, read by the sh tool)."""
    return f"{'.'.join(facts['ip'].split('.')[:3] + ['254'])} {facts['nic']} {facts['ip']}\n"


def ip_route(facts: dict) -> str:
    """`ip route`: a default route via .254 of the node's subnet, and the connected subnets."""
    out = [f"default via {'.'.join(facts['ip'].split('.')[:3] + ['254'])} dev {facts['nic']} "]
    for _idx, name, ip in _interfaces(facts):
        net = ".".join(ip.split(".")[:3] + ["0"])
        out.append(f"{net}/24 dev {name} proto kernel scope link src {ip} ")
    return "".join(line + "\n" for line in out)


def toolkit_install_info(cann_version: str) -> str:
    """`<ASCEND_TOOLKIT_HOME>/aarch64-linux/ascend_toolkit_install.info`."""
    return (
        "package_name=Ascend-cann-toolkit\n"
        f"version={cann_version}\n"
        "innerversion=V100R001C22SPC001B231\n"
        "arch=aarch64\n"
        "os=linux\n"
        f"path=/usr/local/Ascend/ascend-toolkit/{cann_version}/aarch64-linux\n"
    )


def driver_version_info(driver_version: str) -> str:
    """`/usr/local/Ascend/driver/version.info`."""
    return f"Version={driver_version}\nascendhal_version=7.35.23\naicpu_version=1.0\n"


def dist_metadata(name: str, version: str) -> str:
    """A minimal `<name>-<version>.dist-info/METADATA` so importlib.metadata.version works."""
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: SIMULATED placeholder\n"


# config.json of a few model types, in the shape Hugging Face publishes them (values of the
# guide's Qwen3-30B-A3B, and of DeepSeek-V3 for an MLA model: `kv_lora_rank` is what tells
# pdwizard that a model uses MLA). Any other model_type gets a minimal config.
MODEL_CONFIGS: dict[str, dict] = {
    "qwen3_moe": {
        "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False, "bos_token_id": 151643,
        "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
        "intermediate_size": 6144, "max_position_embeddings": 40960, "model_type": "qwen3_moe",
        "moe_intermediate_size": 768, "norm_topk_prob": True, "num_attention_heads": 32,
        "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "vocab_size": 151936,
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "head_dim": 128, "hidden_size": 4096,
        "intermediate_size": 12288, "max_position_embeddings": 40960, "model_type": "qwen3",
        "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
        "torch_dtype": "bfloat16", "vocab_size": 151936,
    },
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 7168, "intermediate_size": 18432,
        "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
        "moe_intermediate_size": 2048, "n_routed_experts": 256, "num_attention_heads": 128,
        "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
        "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "torch_dtype": "bfloat16", "vocab_size": 129280,
    },
}


def model_config_json(model_type: str, overrides: dict) -> str:
    """`<model dir>/config.json`: the built-in config of `model_type`, top-level keys of
    `overrides` replacing its own (a table replaces a table whole)."""
    import json  # here, not at the top: the fake npu-smi imports this module on every call

    config = dict(MODEL_CONFIGS.get(model_type, {"architectures": ["CausalLM"], "model_type": model_type}))
    config.update(overrides)
    return json.dumps(config, indent=2) + "\n"
