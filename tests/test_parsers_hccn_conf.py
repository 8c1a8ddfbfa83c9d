"""/etc/hccn.conf parser: split on the last ``_<digits>``, tolerate anything else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pdwizard.parsers import parse_hccn_conf

FIXTURES = Path(__file__).parent / "fixtures" / "tool_outputs"


def test_conf_fixture_a2() -> None:
    conf = parse_hccn_conf((FIXTURES / "09-hccn-conf-a2.txt").read_text())
    assert sorted(conf) == [0, 7]  # the author's "..." line is ignored
    assert conf[0] == {
        "address": "29.1.137.205",
        "netmask": "255.255.0.0",
        "netdetect": "29.1.0.1",
        "gateway": "29.1.0.1",
        "send_arp_status": "1",
    }
    assert conf[7]["address"] == "29.1.170.143"


def test_conf_splits_on_the_last_digits_suffix() -> None:
    conf = parse_hccn_conf("bond_address_10=1.2.3.4\ntls_enable_3=1\nfoo_1_2=x\n")
    assert conf == {10: {"bond_address": "1.2.3.4"}, 3: {"tls_enable": "1"}, 2: {"foo_1": "x"}}


def test_conf_tolerates_spacing_case_crlf_comments_and_junk() -> None:
    text = "# comment\r\n\r\n  ADDRESS_0 = 10.0.0.1  \r\n\tnetmask_0\t=\t255.255.255.0\r\nnot a key\r\nx=1\r\n"
    assert parse_hccn_conf(text) == {0: {"address": "10.0.0.1", "netmask": "255.255.255.0"}}


def test_conf_unknown_keys_kept_and_last_duplicate_wins() -> None:
    conf = parse_hccn_conf("address_1=1.1.1.1\nfuture_knob_1=on\naddress_1=2.2.2.2\n")
    assert conf == {1: {"address": "2.2.2.2", "future_knob": "on"}}


def test_conf_empty_or_missing() -> None:
    assert parse_hccn_conf("") == {}
    assert parse_hccn_conf(None) == {}
    assert parse_hccn_conf("\n\n  \n") == {}


@settings(max_examples=100, deadline=None)
@given(
    name=st.from_regex(r"[a-z]+(_[a-z]+){0,3}", fullmatch=True),
    phy=st.integers(min_value=0, max_value=15),
    value=st.from_regex(r"[0-9.]{1,15}", fullmatch=True),
    pad=st.tuples(*[st.text(alphabet=" \t", max_size=3)] * 3),
)
def test_property_any_key_round_trips(name: str, phy: int, value: str, pad: tuple[str, str, str]) -> None:
    line = f"{pad[0]}{name}_{phy}{pad[1]}={pad[2]}{value}{pad[0]}"
    assert parse_hccn_conf(line) == {phy: {name: value}}
