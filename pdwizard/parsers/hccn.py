"""Parsers for ``hccn_tool -i N -<cmd> -g`` output (reference sections 1-8, 15).

Every parser matches on *labels*, never on positions: the tool mixes ``key:value``
and ``key: value``, labels drift between driver versions (``netdetect``), and a
PTY or a different shell changes whitespace. Anything the parser does not
recognise yields ``None`` -- never a value that a caller could mistake for a pass.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from pdwizard.parsers.text import lines, normalize

_FLAGS = re.IGNORECASE | re.MULTILINE
_IPV4 = r"(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])"

# ---------------------------------------------------------------------------
# helpers


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    """Group 1 of the first match in normalised text, or None."""
    match = pattern.search(normalize(text))
    return match.group(1) if match else None


def _ipv4(value: str | None) -> str | None:
    """The value if it is a dotted IPv4 address, else None (IPv6 or junk = no IPv4)."""
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        return None


def _netmask(value: str | None) -> str | None:
    """The value if it is a contiguous dotted IPv4 netmask, else None.

    ``ipaddress`` alone would accept ``0.0.255.255`` as a host mask; a RoCE
    netmask with holes in it is a misconfiguration, not a value to carry on with.
    """
    addr = _ipv4(value)
    if addr is None:
        return None
    inverted = ~int(ipaddress.IPv4Address(addr)) & 0xFFFFFFFF
    return addr if inverted & (inverted + 1) == 0 else None


def _upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


# ---------------------------------------------------------------------------
# -lldp


@dataclass(frozen=True)
class LldpInfo:
    """Neighbour switch as seen by LLDP on one RoCE port.

    ``ifname`` is the switch port (``400GE1/1/20:2``); ``None`` means no
    neighbour, which is a failure even when the tool exited 0. ``tlvs`` maps each
    TLV header line (raw, e.g. ``"Port ID TLV"``) to its value, multi-line values
    kept with their inner blank lines.
    """

    ifname: str | None
    tlvs: dict[str, str] = field(default_factory=dict)

    @property
    def has_neighbor(self) -> bool:
        return self.ifname is not None

    def tlv(self, name: str) -> str | None:
        """TLV value by header, case-insensitive, with or without the ``TLV`` suffix."""
        wanted = _tlv_key(name)
        for header, value in self.tlvs.items():
            if _tlv_key(header) == wanted:
                return value
        return None


def _tlv_key(name: str) -> str:
    key = " ".join(name.split()).casefold()
    return key[: -len(" tlv")] if key.endswith(" tlv") else key


_IFNAME = re.compile(r"^\s*Ifname[ \t]*:[ \t]*(\S.*?)[ \t]*$", _FLAGS)
# A header is a colon-free line ending in the word TLV (column 0 in practice;
# indentation tolerated). Value lines are either indented or contain a colon.
_TLV_HEADER = re.compile(r"^[ \t]*([^\s:][^:]*?[ \t]+TLV)$", re.IGNORECASE)


def parse_lldp(stdout: str) -> LldpInfo:
    """Parse an lldpad-style TLV dump; the Ifname line anywhere is the neighbour port."""
    return LldpInfo(ifname=_first(_IFNAME, stdout), tlvs=_parse_tlvs(stdout))


def _parse_tlvs(stdout: str) -> dict[str, str]:
    """Group lines under the last TLV header; lines before any header are dropped."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines(stdout):
        header = _TLV_HEADER.match(line)
        if header:
            name = " ".join(header.group(1).split())
            current = blocks.setdefault(name, [])
            if current:  # repeated TLV (e.g. two management addresses)
                current.append("")
        elif current is not None:
            current.append(line.strip())
    return {name: "\n".join(body).strip("\n") for name, body in blocks.items()}


# ---------------------------------------------------------------------------
# -link, -net_health, -netdetect, -gateway, -ip, -vnic, -tls

# Anchored at line start so ``vnic link status:`` never matches.
_LINK = re.compile(r"^\s*link[ \t_]+stat(?:us|e)[ \t]*:[ \t]*(\w+)", _FLAGS)
_NET_HEALTH = re.compile(r"^\s*net[ \t_-]*health\b[^:\n]*:[ \t]*(.*?)[ \t]*$", _FLAGS)
# Label drift: "netdetect address:" (2025) vs a shorter current label. Any text
# without a colon may follow the word; ``_ip`` style suffixes are allowed too.
_NETDETECT = re.compile(r"^\s*netdetect(?![a-z])[^:\n]*:[ \t]*" + _IPV4, _FLAGS)
_GATEWAY = re.compile(r"\bgateway\b[^:\n,]*:[ \t]*" + _IPV4, re.IGNORECASE)
_IFACE = re.compile(r"\biface[ \t]*:[ \t]*([\w.:-]+)", re.IGNORECASE)
_IPADDR = re.compile(r"^\s*ip[ \t_]*addr(?:ess)?[ \t]*:[ \t]*(\S+)", _FLAGS)
_NETMASK = re.compile(r"^\s*netmask[ \t]*:[ \t]*(\S+)", _FLAGS)
_VNIC_LINK = re.compile(r"^\s*vnic[ \t_]+link[ \t_]+stat(?:us|e)[ \t]*:[ \t]*(\w+)", _FLAGS)
_VNIC_IP = re.compile(r"^\s*vnic[ \t_]+ip(?:[ \t_]*addr(?:ess)?)?[ \t]*:[ \t]*(\S+)", _FLAGS)
_VNIC_MASK = re.compile(r"^\s*vnic[ \t_]+netmask[ \t]*:[ \t]*(\S+)", _FLAGS)
_TLS = re.compile(r"tls[ \t]*switch[ \t]*\[[ \t]*(\d)[ \t]*\]", re.IGNORECASE)


def parse_link(stdout: str) -> str | None:
    """``UP`` / ``DOWN`` (upper-cased) from ``link status: X``; None if absent."""
    return _upper(_first(_LINK, stdout))


def parse_net_health(stdout: str) -> str | None:
    """Raw status after the first colon (``Receive timeout`` has spaces); None if absent."""
    value = _first(_NET_HEALTH, stdout)
    return value or None


NetHealthClass = Literal["ok", "warn", "fail"]


def classify_net_health(value: str | None) -> NetHealthClass:
    """``Success`` ok; ``Init`` warn (netdetect not set, not a cable fault); all else fail.

    Unknown strings and ``None`` fail: an unrecognised status must never pass.
    """
    word = " ".join((value or "").split()).casefold()
    if word == "success":
        return "ok"
    if word == "init":
        return "warn"
    return "fail"


def parse_netdetect(stdout: str) -> str | None:
    """The probe target IPv4, whatever the label says; ``0.0.0.0`` returned as is.

    The caller decides that ``0.0.0.0`` means "not set" (WARN, pairs with Init).
    """
    return _ipv4(_first(_NETDETECT, stdout))


def parse_gateway(stdout: str) -> tuple[str | None, str | None]:
    """(gateway, iface) from ``default gateway:G, Iface:ethN``; iface is optional.

    No gateway -> ``(None, None)``: the stderr "no gateway was preset" has no
    colon after the word, so it cannot be mistaken for a value.
    """
    for line in lines(stdout):
        match = _GATEWAY.search(line)
        if match and _ipv4(match.group(1)):
            iface = _IFACE.search(line[match.end():]) or _IFACE.search(normalize(stdout))
            return _ipv4(match.group(1)), iface.group(1) if iface else None
    return None, None


def parse_ip(stdout: str) -> tuple[str | None, str | None]:
    """(ipaddr, netmask) of the RoCE NIC; each None when absent or not valid IPv4.

    Empty stdout (stderr discarded, no IP configured) is ``(None, None)``.
    """
    return _ipv4(_first(_IPADDR, stdout)), _netmask(_first(_NETMASK, stdout))


@dataclass(frozen=True)
class VnicInfo:
    """A3 HCCS virtual NIC: link (upper-cased) and IPv4 config, each None if absent."""

    link: str | None
    ip: str | None
    netmask: str | None


def parse_vnic(stdout: str) -> VnicInfo:
    """``vnic link status`` / ``vnic ipaddr`` / ``vnic netmask`` lines."""
    return VnicInfo(
        link=_upper(_first(_VNIC_LINK, stdout)),
        ip=_ipv4(_first(_VNIC_IP, stdout)),
        netmask=_netmask(_first(_VNIC_MASK, stdout)),
    )


def parse_tls(stdout: str) -> int | None:
    """The ``tls switch[N]`` digit (0 off, 1 on): all nodes must agree."""
    value = _first(_TLS, stdout)
    return int(value) if value is not None else None


# ---------------------------------------------------------------------------
# -ping


@dataclass(frozen=True)
class PingResult:
    """One ``-ping`` run. The summary line is the truth; per-packet lines are for display."""

    device: int | None
    target: str | None
    transmitted: int
    received: int
    loss_pct: float
    rtts_ms: list[float] = field(default_factory=list)
    timeouts: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every packet came back: partial loss is a failure, so is zero sent."""
        return self.transmitted > 0 and self.received == self.transmitted and self.loss_pct == 0


_PING_DEVICE = re.compile(r"^\s*(?:device[ \t]+(\d+)[ \t]+)?PING[ \t]+(\S+)", _FLAGS)
_PING_SUMMARY = re.compile(
    r"(\d+)[ \t]+packets?[ \t]+transmitted[ \t]*,[ \t]*(\d+)[ \t]+(?:packets?[ \t]+)?received"
    r"(?:[ \t]*,[^,%\n]*?)*?[ \t]*,[ \t]*(\d+(?:\.\d+)?)[ \t]*%[ \t]*packets?[ \t]+loss",
    re.IGNORECASE,
)
_PING_RTT = re.compile(
    r"recv[ \t]+seq[ \t]*=[ \t]*\d+[ \t]*,[ \t]*time[ \t]*=[ \t]*(\d+(?:\.\d+)?)[ \t]*ms", re.IGNORECASE
)
_PING_TIMEOUT = re.compile(r"recv[ \t]+time[ \t]*out[ \t]+seq[ \t]*=[ \t]*(\d+)", re.IGNORECASE)


def parse_ping(stdout: str) -> PingResult | None:
    """Summary, RTTs and timed-out seqs; None when there is no summary line.

    ``packet loss`` and ``packets loss`` both occur. A non-zero exit with
    ``recv time out`` is a normal negative result, so this does not look at it.
    """
    text = normalize(stdout)
    summary = _PING_SUMMARY.search(text)
    if summary is None:
        return None
    header = _PING_DEVICE.search(text)
    return PingResult(
        device=int(header.group(1)) if header and header.group(1) else None,
        target=header.group(2) if header else None,
        transmitted=int(summary.group(1)),
        received=int(summary.group(2)),
        loss_pct=float(summary.group(3)),
        rtts_ms=[float(ms) for ms in _PING_RTT.findall(text)],
        timeouts=[int(seq) for seq in _PING_TIMEOUT.findall(text)],
    )


# ---------------------------------------------------------------------------
# environment failures

_BUSY = re.compile(r"hccn_tool\s+is\s+busy|busy\s*,?\s*please\s+try\s+again", re.IGNORECASE)
_NOT_SUPPORTED = re.compile(r"\bnot\s+support(?:ed)?\b", re.IGNORECASE)


def is_busy(stdout: str | None, stderr: str | None = "") -> bool:
    """``hccn_tool is busy, please try again.`` (stdout, exit 11): retry, not a fault."""
    return any(_BUSY.search(normalize(stream)) for stream in (stdout, stderr))


def is_not_supported(stdout: str | None, stderr: str | None = "") -> bool:
    """``The command is not supported on this product.`` (or npu-smi's "does not support")."""
    return any(_NOT_SUPPORTED.search(normalize(stream)) for stream in (stdout, stderr))
