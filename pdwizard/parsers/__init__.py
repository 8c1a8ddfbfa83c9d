"""Pure parsers over real Ascend tool output (reference: ascend-tool-outputs.md).

No I/O here: callers run the tools (through ``pdwizard.remote``) and hand the
captured text in. Unknown or empty output never parses as a pass.
"""

from pdwizard.parsers.hccn import (
    LldpInfo,
    NetHealthClass,
    PingResult,
    VnicInfo,
    classify_net_health,
    is_busy,
    is_not_supported,
    parse_gateway,
    parse_ip,
    parse_link,
    parse_lldp,
    parse_net_health,
    parse_netdetect,
    parse_ping,
    parse_tls,
    parse_vnic,
)
from pdwizard.parsers.hccn_conf import parse_hccn_conf
from pdwizard.parsers.npusmi import (
    ChipRow,
    KeyValues,
    MapRow,
    NpuProcess,
    NpuSmiInfo,
    Soc,
    SpodInfo,
    parse_board,
    parse_info,
    parse_list,
    parse_mapping,
    parse_spod_info,
)
from pdwizard.parsers.text import lines, meaningful_lines, normalize

__all__ = [
    "ChipRow",
    "KeyValues",
    "LldpInfo",
    "MapRow",
    "NetHealthClass",
    "NpuProcess",
    "NpuSmiInfo",
    "PingResult",
    "Soc",
    "SpodInfo",
    "VnicInfo",
    "classify_net_health",
    "is_busy",
    "is_not_supported",
    "lines",
    "meaningful_lines",
    "normalize",
    "parse_board",
    "parse_gateway",
    "parse_hccn_conf",
    "parse_info",
    "parse_ip",
    "parse_link",
    "parse_list",
    "parse_lldp",
    "parse_mapping",
    "parse_net_health",
    "parse_netdetect",
    "parse_ping",
    "parse_spod_info",
    "parse_tls",
    "parse_vnic",
]
