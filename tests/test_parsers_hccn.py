"""hccn_tool parsers against the reference captures and their real-world variants."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdwizard.parsers import (
    LldpInfo,
    PingResult,
    VnicInfo,
    classify_net_health,
    is_busy,
    is_not_supported,
    normalize,
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

from tool_outputs import FIXTURES, ansi, crlf, fx  # noqa: F401


# ---------------------------------------------------------------------------
# fixtures: every verbatim block of the reference has a file


def test_fixture_directory_holds_every_reference_block() -> None:
    expected = {
        "01-lldp-success-a2", "01-lldp-success-a2-tabs", "01-lldp-no-neighbor",
        "02-link-up-loop", "02-link-down",
        "03-net-health-success", "03-net-health-fault", "03-net-health-init",
        "04-netdetect-loop",
        "05-gateway-loop", "05-gateway-not-preset-stderr",
        "06-ip-success", "06-ip-loop", "06-ip-not-preset-stderr",
        "07-vnic-a3-loop",
        "08-ping-success", "08-ping-total-loss",
        "09-hccn-conf-a2",
        "10-info-a2-910b1", "10-info-a3-processes", "10-info-container-8020",
        "11-list-a2", "11-list-a2-tabs", "11-list-a3-docstring", "11-list-a3-docstring-tabs",
        "12-spod-info-a3", "12-spod-info-invalid-card",
        "13-mapping-a2", "13-mapping-a2-tabs", "13-mapping-a3",
        "14-board-a2", "14-board-a2-tabs",
        "15-tls-switch",
    }  # fmt: skip
    assert {path.stem for path in FIXTURES.glob("*.txt")} == expected


def test_tab_fixtures_really_hold_tabs() -> None:
    assert "\tIfname: 400GE1/1/20:2" in fx("01-lldp-success-a2-tabs")
    assert "        Ifname: 400GE1/1/20:2" in fx("01-lldp-success-a2")


# ---------------------------------------------------------------------------
# -lldp


def test_lldp_full_dump_gives_port_and_tlvs() -> None:
    info = parse_lldp(fx("01-lldp-success-a2"))
    assert info.ifname == "400GE1/1/20:2"
    assert info.has_neighbor
    assert list(info.tlvs) == [
        "Chassis ID TLV",
        "Port ID TLV",
        "System Description TLV",
        "System Capabilities TLV",
        "Management Address TLV",
        "Maximum Frame Size TLV",
        "End of LLDPDU TLV",
    ]
    assert info.tlvs["Maximum Frame Size TLV"] == "9216"
    assert info.tlvs["System Capabilities TLV"] == "Enabled capabilities: Bridge, Router"


def test_lldp_multiline_value_keeps_unindented_and_blank_lines() -> None:
    desc = parse_lldp(fx("01-lldp-success-a2")).tlvs["System Description TLV"]
    assert desc == (
        "Versatile Routing Platform Software\n"
        "VRP (R) software, Version 8.211 (DX511 V200R021C10SPC600)\n"
        "\n"
        "Huarong DX511"
    )


def test_lldp_tabs_crlf_ansi_give_the_same_result() -> None:
    expected = parse_lldp(fx("01-lldp-success-a2"))
    assert parse_lldp(fx("01-lldp-success-a2-tabs")) == expected
    assert parse_lldp(crlf(fx("01-lldp-success-a2-tabs"))) == expected
    assert parse_lldp(ansi(fx("01-lldp-success-a2"))) == expected


def test_lldp_tlv_lookup_ignores_case_and_suffix() -> None:
    info = parse_lldp(fx("01-lldp-success-a2"))
    assert info.tlv("port id") == "Ifname: 400GE1/1/20:2"
    assert info.tlv("MAXIMUM FRAME SIZE TLV") == "9216"
    assert info.tlv("System Name") is None


@pytest.mark.parametrize("stdout", [fx("01-lldp-no-neighbor"), "", "\n\n", "Command execute failed!\n"])
def test_lldp_without_ifname_is_no_neighbor(stdout: str) -> None:
    info = parse_lldp(stdout)
    assert info == LldpInfo(ifname=None, tlvs={})
    assert not info.has_neighbor


def test_lldp_port_id_without_ifname_is_no_neighbor() -> None:
    info = parse_lldp("Chassis ID TLV\n\tMAC: 00:11\nPort ID TLV\n\tMAC: 00:22\nEnd of LLDPDU TLV\n")
    assert info.ifname is None
    assert info.tlvs["Port ID TLV"] == "MAC: 00:22"


@pytest.mark.parametrize(
    "line",
    [
        "Ifname: 100GE1/0/1",
        "\tIfname:100GE1/0/1",
        "   ifname   :   100GE1/0/1   ",
        "IFNAME\t:\t100GE1/0/1",
    ],
)
def test_lldp_ifname_any_spacing_and_case(line: str) -> None:
    stdout = f"[noise before]\nPort ID TLV\n{line}\nEnd of LLDPDU TLV\ntrailing noise\n"
    assert parse_lldp(stdout).ifname == "100GE1/0/1"


def test_lldp_empty_ifname_value_is_no_neighbor() -> None:
    assert parse_lldp("Port ID TLV\n\tIfname:   \n").ifname is None


def test_lldp_repeated_tlv_values_are_joined() -> None:
    stdout = "Management Address TLV\n\tIPv4: 1.1.1.1\nManagement Address TLV\n\tIPv6: ::1\n"
    assert parse_lldp(stdout).tlvs["Management Address TLV"] == "IPv4: 1.1.1.1\n\nIPv6: ::1"


# ---------------------------------------------------------------------------
# -link


def test_link_fixtures() -> None:
    assert parse_link(fx("02-link-up-loop")) == "UP"
    assert parse_link(fx("02-link-down")) == "DOWN"


@pytest.mark.parametrize(
    "stdout", ["link status: up", "LINK STATUS:UP", "  Link Status  :  Up  ", "\tlink status\t:\tUP\r\n"]
)
def test_link_value_is_upper_cased_whatever_the_spacing(stdout: str) -> None:
    assert parse_link(stdout) == "UP"


def test_link_never_reads_the_vnic_line() -> None:
    assert parse_link(fx("07-vnic-a3-loop")) is None
    assert parse_link("vnic link status: UP\nlink status: DOWN\n") == "DOWN"


@pytest.mark.parametrize("stdout", ["", "\n", "Command execute failed!", "link status:\nUP"])
def test_link_absent_is_none(stdout: str) -> None:
    assert parse_link(stdout) is None


def test_link_with_crlf_and_ansi() -> None:
    assert parse_link(crlf(ansi("link status: DOWN\n"))) == "DOWN"


# ---------------------------------------------------------------------------
# -net_health


@pytest.mark.parametrize(
    ("name", "value", "verdict"),
    [
        ("03-net-health-success", "Success", "ok"),
        ("03-net-health-fault", "Fault", "fail"),
        ("03-net-health-init", "Init", "warn"),
    ],
)
def test_net_health_fixtures(name: str, value: str, verdict: str) -> None:
    parsed = parse_net_health(fx(name))
    assert parsed == value
    assert classify_net_health(parsed) == verdict


@pytest.mark.parametrize(
    "raw", ["Socket fail", "Receive timeout", "Unreachable", "Time exceeded", "Thread error", "Detect ip set"]
)
def test_net_health_keeps_values_with_spaces_and_they_fail(raw: str) -> None:
    parsed = parse_net_health(f"net health status: {raw}\n")
    assert parsed == raw
    assert classify_net_health(parsed) == "fail"


@pytest.mark.parametrize(
    "stdout", ["NET HEALTH STATUS:success", "\tnet health status :  SUCCESS  \r\n", "net_health status: Success"]
)
def test_net_health_label_spacing_and_case(stdout: str) -> None:
    assert classify_net_health(parse_net_health(stdout)) == "ok"


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ("Success", "ok"),
        ("success", "ok"),
        ("  SUCCESS ", "ok"),
        ("Init", "warn"),
        ("INIT", "warn"),
        ("Unknown", "fail"),
        ("Some brand new status", "fail"),
        ("Successful", "fail"),
        ("", "fail"),
        (None, "fail"),
    ],
)
def test_classify_net_health(value: str | None, verdict: str) -> None:
    assert classify_net_health(value) == verdict


@pytest.mark.parametrize("stdout", ["", "\n", "net health status:", "Command execute failed!"])
def test_net_health_absent_is_none_and_fails(stdout: str) -> None:
    assert parse_net_health(stdout) is None
    assert classify_net_health(parse_net_health(stdout)) == "fail"


# ---------------------------------------------------------------------------
# -netdetect


def test_netdetect_fixture_long_label() -> None:
    assert parse_netdetect(fx("04-netdetect-loop")) == "11.12.165.1"


@pytest.mark.parametrize(
    "stdout",
    [
        "netdetect: 1.2.3.4",
        "netdetect:1.2.3.4",
        "netdetect ip: 1.2.3.4",
        "netdetect address : 1.2.3.4\r\n",
        "NetDetect Address:\t1.2.3.4   ",
        "\tnetdetect_ip: 1.2.3.4",
        "some banner\nnetdetect: 1.2.3.4\ntrailer\n",
    ],
)
def test_netdetect_label_drift(stdout: str) -> None:
    assert parse_netdetect(stdout) == "1.2.3.4"


def test_netdetect_unset_is_returned_as_is() -> None:
    assert parse_netdetect("netdetect address: 0.0.0.0\n") == "0.0.0.0"


@pytest.mark.parametrize(
    "stdout",
    ["", "net health status: Success", "netdetect address: 999.1.1.1", "netdetect address:", "netdetectx: 1.2.3.4"],
)
def test_netdetect_absent_or_invalid_is_none(stdout: str) -> None:
    assert parse_netdetect(stdout) is None


# ---------------------------------------------------------------------------
# -gateway


def test_gateway_fixture() -> None:
    assert parse_gateway(fx("05-gateway-loop")) == ("11.12.165.1", "eth0")


def test_gateway_not_preset_message_is_no_gateway() -> None:
    assert parse_gateway(fx("05-gateway-not-preset-stderr")) == (None, None)
    assert parse_gateway("") == (None, None)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("default gateway: 10.0.0.1, Iface: eth3", ("10.0.0.1", "eth3")),
        ("DEFAULT GATEWAY:10.0.0.1,IFACE:eth3\r\n", ("10.0.0.1", "eth3")),
        ("\tdefault gateway : 10.0.0.1 ,  Iface : eth3  ", ("10.0.0.1", "eth3")),
        ("default gateway:10.0.0.1", ("10.0.0.1", None)),
        ("gateway address: 10.0.0.1", ("10.0.0.1", None)),
        ("default gateway:10.0.0.300, Iface:eth0", (None, None)),
    ],
)
def test_gateway_variants(stdout: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_gateway(stdout) == expected


# ---------------------------------------------------------------------------
# -ip


def test_ip_fixtures() -> None:
    assert parse_ip(fx("06-ip-success")) == ("29.1.112.213", "255.255.0.0")
    assert parse_ip(fx("06-ip-loop")) == ("11.12.165.80", "255.255.255.0")


def test_ip_not_preset_and_empty_are_none() -> None:
    assert parse_ip(fx("06-ip-not-preset-stderr")) == (None, None)
    assert parse_ip("") == (None, None)


def test_ip_does_not_read_vnic_lines() -> None:
    assert parse_ip(fx("07-vnic-a3-loop")) == (None, None)


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("ipaddr: 10.1.1.2\nnetmask: 255.255.255.0", ("10.1.1.2", "255.255.255.0")),
        ("  IPADDR :10.1.1.2\r\n\tNETMASK\t:\t255.255.255.0\r\n", ("10.1.1.2", "255.255.255.0")),
        ("ipaddr:10.1.1.999\nnetmask:255.255.255.0", (None, "255.255.255.0")),
        ("ipaddr:fe80::1\nnetmask:ffff::", (None, None)),
        ("ipaddr:10.1.1.2\nnetmask:255.0.255.0", ("10.1.1.2", None)),
        ("ipaddr:10.1.1.2\nnetmask:banana", ("10.1.1.2", None)),
    ],
)
def test_ip_variants_and_validation(stdout: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_ip(stdout) == expected


# ---------------------------------------------------------------------------
# -vnic


def test_vnic_fixture() -> None:
    assert parse_vnic(fx("07-vnic-a3-loop")) == VnicInfo(link="UP", ip="192.168.2.199", netmask="255.255.255.0")


def test_vnic_variants() -> None:
    stdout = "VNIC LINK STATUS:down\r\n\tvnic ipaddr :192.168.2.5\r\nvnic netmask:\t255.255.255.0   \r\n"
    assert parse_vnic(stdout) == VnicInfo(link="DOWN", ip="192.168.2.5", netmask="255.255.255.0")


@pytest.mark.parametrize("stdout", ["", "Command execute failed!", "link status: UP\nipaddr:1.2.3.4"])
def test_vnic_absent_is_all_none(stdout: str) -> None:
    assert parse_vnic(stdout) == VnicInfo(link=None, ip=None, netmask=None)


# ---------------------------------------------------------------------------
# -ping


def test_ping_success_fixture() -> None:
    result = parse_ping(fx("08-ping-success"))
    assert result == PingResult(
        device=3,
        target="29.1.137.205",
        transmitted=3,
        received=3,
        loss_pct=0.0,
        rtts_ms=[1.418, 0.034, 0.04],
        timeouts=[],
    )
    assert result.passed


def test_ping_total_loss_fixture() -> None:
    result = parse_ping(fx("08-ping-total-loss"))
    assert result is not None
    assert (result.device, result.target) == (0, "10.10.100.22")
    assert (result.transmitted, result.received, result.loss_pct) == (3, 0, 100.0)
    assert result.timeouts == [0, 1, 2]
    assert result.rtts_ms == []
    assert not result.passed


@pytest.mark.parametrize("word", ["packet", "packets", "PACKETS"])
def test_ping_packet_or_packets_loss(word: str) -> None:
    result = parse_ping(f"3 packets transmitted, 3 received, 0.00% {word} loss\n")
    assert result is not None and result.passed
    assert result.device is None and result.target is None


def test_ping_partial_loss_fails() -> None:
    stdout = (
        "device 5 PING 10.0.0.9\r\nrecv seq=0,time=0.1ms\r\nrecv time out seq=1\r\n"
        "recv seq=2, time=0.2 ms\r\n3 packets transmitted, 2 received, 33.33% packet loss\r\n"
    )
    result = parse_ping(ansi(stdout))
    assert result is not None
    assert (result.device, result.target, result.received, result.loss_pct) == (5, "10.0.0.9", 2, 33.33)
    assert result.rtts_ms == [0.1, 0.2]
    assert result.timeouts == [1]
    assert not result.passed


def test_ping_target_without_device_prefix() -> None:
    result = parse_ping("PING 10.0.0.7\n1 packets transmitted, 1 received, 0% packet loss\n")
    assert result is not None
    assert (result.device, result.target, result.passed) == (None, "10.0.0.7", True)


def test_ping_zero_transmitted_never_passes() -> None:
    result = parse_ping("0 packets transmitted, 0 received, 0% packet loss")
    assert result is not None and not result.passed


def test_ping_linux_style_summary_with_errors() -> None:
    result = parse_ping("3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2003ms")
    assert result is not None
    assert (result.transmitted, result.received, result.loss_pct) == (3, 0, 100.0)


@pytest.mark.parametrize(
    "stdout",
    ["", "device 0 PING 1.2.3.4\nrecv seq=0,time=0.1ms\n", "Command execute failed!", "hccn_tool is busy"],
)
def test_ping_without_summary_is_none(stdout: str) -> None:
    assert parse_ping(stdout) is None


# ---------------------------------------------------------------------------
# -tls


def test_tls_fixture() -> None:
    assert parse_tls(fx("15-tls-switch")) == 0


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("dev_id:3, tls switch[1](0:disable, 1:enable), tls preconfigured[1]", 1),
        ("TLS SWITCH [ 0 ]", 0),
        ("tls preconfigured[1](0:non-preset, 1:preset)", None),
        ("", None),
    ],
)
def test_tls_variants(stdout: str, expected: int | None) -> None:
    assert parse_tls(stdout) == expected


# ---------------------------------------------------------------------------
# environment failures


def test_busy_on_stdout_or_stderr() -> None:
    assert is_busy("hccn_tool is busy, please try again.\n", "")
    assert is_busy("", "hccn_tool is busy, please try again.\r\n")
    assert is_busy("HCCN_TOOL IS BUSY, PLEASE TRY AGAIN.")
    assert not is_busy("link status: UP\n", "")
    assert not is_busy("", "Command execute failed!")
    assert not is_busy(None, None)


def test_not_supported_messages() -> None:
    assert is_not_supported("The command is not supported on this product.\n", "")
    assert is_not_supported("", "The command is not supported on this product.")
    assert is_not_supported("This device does not support querying spod-info.\n")
    assert not is_not_supported("link status: UP\n", "")
    assert not is_not_supported("", "Get unknown option!")


# ---------------------------------------------------------------------------
# text normalisation


def test_normalize_crlf_ansi_trailing() -> None:
    assert normalize("a  \r\n\x1b[31mb\x1b[0m\t\r\n") == "a\nb\n"
    assert normalize(None) == ""


# ---------------------------------------------------------------------------
# properties

_ws = st.text(alphabet=" \t", max_size=4)
_ws1 = st.text(alphabet=" \t", min_size=1, max_size=4)


def _random_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips))


@st.composite
def label_line(draw: st.DrawFn, label_words: list[str], value: str) -> str:
    """``<ws>label words<ws>:<ws>value<ws>`` with random case, spacing, line ending."""
    label = "".join(
        _random_case(draw, word) + (draw(_ws1) if i < len(label_words) - 1 else "")
        for i, word in enumerate(label_words)
    )
    line = f"{draw(_ws)}{label}{draw(_ws)}:{draw(_ws)}{value}{draw(_ws)}"
    before = draw(st.sampled_from(["", "noise line\n", "\n\n"]))
    after = draw(st.sampled_from(["", "\n", "\ntrailing noise\n"]))
    text = before + line + after
    return crlf(text) if draw(st.booleans()) else text


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_label_mutations_parse_the_same_value(data: st.DataObject) -> None:
    assert parse_link(data.draw(label_line(["link", "status"], "UP"))) == "UP"
    assert parse_net_health(data.draw(label_line(["net", "health", "status"], "Receive timeout"))) == (
        "Receive timeout"
    )
    assert parse_netdetect(data.draw(label_line(["netdetect", "address"], "10.9.8.7"))) == "10.9.8.7"
    assert parse_netdetect(data.draw(label_line(["netdetect"], "10.9.8.7"))) == "10.9.8.7"
    assert parse_ip(data.draw(label_line(["ipaddr"], "10.9.8.7")))[0] == "10.9.8.7"
    assert parse_ip(data.draw(label_line(["netmask"], "255.255.252.0")))[1] == "255.255.252.0"
    assert parse_vnic(data.draw(label_line(["vnic", "link", "status"], "down"))).link == "DOWN"
    assert parse_gateway(data.draw(label_line(["default", "gateway"], "10.9.8.1")))[0] == "10.9.8.1"


_printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300
)


@settings(max_examples=150, deadline=None)
@given(_printable)
def test_property_garbage_never_passes(text: str) -> None:
    result = parse_ping(text)
    if "transmitted" not in text.casefold():
        assert result is None
    expected = {"success": "ok", "init": "warn"}.get(" ".join(text.split()).casefold(), "fail")
    assert classify_net_health(text) == expected
    assert classify_net_health(parse_net_health(text)) in {"ok", "warn", "fail"}
    parse_lldp(text), parse_link(text), parse_gateway(text), parse_ip(text), parse_vnic(text), parse_tls(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    "recv seq=0,time=0.1ms", "recv time out seq=1", "device 1 PING 1.1.1.1", "Command execute failed!",
    "3 packets transmitted, 2 received, 33.33% packet loss", "3 packets transmitted, 0 received, 100% packet loss",
    "link status: UP", "", "garbage 0% loss",
]), max_size=8))  # fmt: skip
def test_property_ping_lines_never_fake_a_pass(parts: list[str]) -> None:
    """Shuffled real fragments without a clean summary can never pass."""
    result = parse_ping("\n".join(parts))
    if result is None:
        assert not any(re.search(r"packets transmitted", part) for part in parts)
    else:
        assert not result.passed
