"""npu-smi parsers against the reference captures and layout/width/noise variants."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdwizard.errors import ParseError
from pdwizard.parsers import (
    ChipRow,
    MapRow,
    NpuProcess,
    SpodInfo,
    parse_board,
    parse_info,
    parse_list,
    parse_mapping,
    parse_spod_info,
)

from tool_outputs import FIXTURES, ansi, crlf, fx  # noqa: F401


def widen(text: str) -> str:
    """Another table width: every run of 2+ spaces doubled (no column offsets survive)."""
    return re.sub(r" {2,}", lambda m: m.group() * 2, text)


A2 = "10-info-a2-910b1"
A3 = "10-info-a3-processes"
A3_PIDS = [957687, 957770, 957790, 957852, 957876, 957912, 957957, 958011]

# ---------------------------------------------------------------------------
# npu-smi info


def test_info_a2_fixture() -> None:
    info = parse_info(fx(A2))
    assert info.version == "24.1.0"
    assert info.soc == "A2"
    assert info.noise == []
    assert info.processes == []
    assert [chip.npu_id for chip in info.chips] == list(range(8))
    assert info.chips[0] == ChipRow(
        npu_id=0,
        chip_id=0,
        phy_id=None,
        name="910B1",
        health="OK",
        power_w=100.4,
        temp_c=50,
        aicore_pct=0,
        hbm_used_mb=3395,
        hbm_total_mb=65536,
        bus_id="0000:C1:00.0",
    )
    assert info.chips[6].bus_id == "0000:82:00.0"
    assert info.chips[6].hbm_used_mb == 3391
    assert info.chips[2].power_w == 98.0
    assert all(chip.health_ok for chip in info.chips)


def test_info_a3_fixture_chips() -> None:
    info = parse_info(fx(A3))
    assert info.version == "24.1.rc3.3"
    assert info.soc == "A3"
    assert len(info.chips) == 16
    assert [(c.npu_id, c.chip_id) for c in info.chips] == [(n, d) for n in range(8) for d in (0, 1)]
    assert [c.phy_id for c in info.chips] == list(range(16))
    assert {c.name for c in info.chips} == {"Ascend910"}
    die0, die1 = info.chips[0], info.chips[1]
    assert (die0.power_w, die0.temp_c, die0.bus_id) == (182.0, 36, "0000:9D:00.0")
    assert (die1.power_w, die1.temp_c, die1.bus_id) == (None, 35, "0000:9F:00.0")


def test_info_a3_five_digit_hbm_touching_the_slash() -> None:
    chips = {(c.npu_id, c.chip_id): c for c in parse_info(fx(A3)).chips}
    assert (chips[4, 0].hbm_used_mb, chips[4, 0].hbm_total_mb) == (52553, 65536)
    assert (chips[7, 1].hbm_used_mb, chips[7, 1].hbm_total_mb) == (52358, 65536)
    assert chips[0, 0].hbm_used_mb == 3402


def test_info_a3_process_rows() -> None:
    processes = parse_info(fx(A3)).processes
    assert [p.pid for p in processes] == A3_PIDS
    assert processes[0] == NpuProcess(npu_id=4, chip_id=0, pid=957687, name="pt_main_thread", memory_mb=49207)
    assert [(p.npu_id, p.chip_id) for p in processes] == [(n, d) for n in (4, 5, 6, 7) for d in (0, 1)]


def test_info_process_name_may_be_blank() -> None:
    text = fx(A3).replace("| 957687        | pt_main_thread           |", "| 957687        |                          |")
    first = parse_info(text).processes[0]
    assert (first.pid, first.name, first.memory_mb) == (957687, "", 49207)


def test_info_process_name_with_header_words_is_still_a_process() -> None:
    text = fx(A3).replace("| 957687        | pt_main_thread           |", "| 957687        | health_process_name      |")
    processes = parse_info(text).processes
    assert [p.pid for p in processes] == A3_PIDS
    assert processes[0].name == "health_process_name"


@pytest.mark.parametrize("health", ["Alarm", "Critical", "UNKNOWN"])
def test_info_any_health_word_is_kept_and_not_ok(health: str) -> None:
    text = fx(A2).replace("| 3     910B1               | OK            |", f"| 3     910B1               | {health:<13} |")
    chip = parse_info(text).chips[3]
    assert (chip.health, chip.health_ok) == (health, False)
    assert len(parse_info(text).chips) == 8


def test_info_container_failure_raises_with_noise_and_raw() -> None:
    text = fx("10-info-container-8020")
    with pytest.raises(ParseError) as caught:
        parse_info(text)
    assert "dcmi model initialized failed, because the device is used. ret is -8020" in caught.value.message
    assert "DrvMngGetConsoleLogLevel failed" in caught.value.message
    assert caught.value.raw == text


@pytest.mark.parametrize("text", ["", "\n\n", None])
def test_info_empty_raises(text: str | None) -> None:
    with pytest.raises(ParseError, match="empty output"):
        parse_info(text)


@pytest.mark.parametrize("name", [A2, A3])
def test_info_noise_before_and_after_table(name: str) -> None:
    before = "DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3)\n[WARNING] some driver warning\n"
    after = "\n[WARNING] trailing line\n"
    info = parse_info(before + fx(name) + after)
    assert info.chips == parse_info(fx(name)).chips
    assert info.processes == parse_info(fx(name)).processes
    assert info.noise == [
        "DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3)",
        "[WARNING] some driver warning",
        "[WARNING] trailing line",
    ]


@pytest.mark.parametrize("name", [A2, A3])
@pytest.mark.parametrize("mutate", [crlf, ansi, widen, lambda t: t.replace("    ", "\t")], ids=["crlf", "ansi", "wide", "tabs"])
def test_info_variants_parse_identically(name: str, mutate) -> None:  # type: ignore[no-untyped-def]
    assert parse_info(mutate(fx(name))) == parse_info(fx(name))


def test_info_version_banner_outside_the_box() -> None:
    body = fx(A2).split("\n")
    text = "npu-smi 25.5.1   Version: 25.5.1\n" + "\n".join(body[3:])
    info = parse_info(text)
    assert info.version == "25.5.1"
    assert len(info.chips) == 8


def test_info_indented_table_and_lowercase_header() -> None:
    text = "\n".join("  " + line for line in fx(A2).split("\n")).replace("Health", "health")
    assert parse_info(text).chips == parse_info(fx(A2)).chips


def test_info_a3_without_phy_header_still_a3_by_name() -> None:
    text = fx(A3).replace("| Chip  Phy-ID              |", "| Chip                      |")
    info = parse_info(text)
    assert info.soc == "A3"
    assert info.chips[3].phy_id == 3  # still read from the row


def test_info_two_dies_per_npu_is_a3_whatever_the_name() -> None:
    text = fx(A3).replace("| Chip  Phy-ID              |", "| Chip                      |")
    text = text.replace("Ascend910  ", "Ascend910X ")
    info = parse_info(text)
    assert info.chips[0].name == "Ascend910X"
    assert info.soc == "A3"


def test_info_unknown_family_single_die_has_no_soc() -> None:
    assert parse_info(fx(A2).replace("910B1", "310P3")).soc is None


def test_info_910b_with_suffix_is_a2() -> None:
    assert parse_info(fx(A2).replace("910B1", "910B3")).soc == "A2"


def test_info_health_power_na_kept_raw() -> None:
    text = fx(A2).replace(
        "| 0     910B1               | OK            | 100.4       50 ",
        "| 0     910B1               | Warning       | NA          50 ",
    )
    chip = parse_info(text).chips[0]
    assert (chip.health, chip.health_ok, chip.power_w) == ("Warning", False, None)


def test_info_row_without_chip_row_raises() -> None:
    text = fx(A2).replace("| 0                         | 0000:C1:00.0  | 0           0    / 0          3395 / 65536         |\n", "")
    with pytest.raises(ParseError, match="no chip row"):
        parse_info(text)


def test_info_wider_process_table_located_by_header() -> None:
    """A layout with an extra process column: fields found by label, not position."""
    text = fx(A3).replace(
        "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |",
        "| NPU     Chip              | Process id    | Process name             | Process type | Process memory(MB)      |",
    ).replace("| pt_main_thread           | 49207", "| pt_main_thread           | ctr   | 49207")
    processes = parse_info(text).processes
    assert [p.pid for p in processes] == A3_PIDS
    assert {p.memory_mb for p in processes} == {49207}
    assert {p.name for p in processes} == {"pt_main_thread"}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_property_info_garbage_raises_parse_error_only(text: str) -> None:
    try:
        info = parse_info(text)
    except ParseError as error:
        assert error.raw == text
    else:  # only a real table can parse, and it has chips
        assert info.chips


# ---------------------------------------------------------------------------
# npu-smi info -m


A2_MAP = [MapRow(npu_id=n, chip_id=0, logic_id=n, phy_id=None, name="Ascend 910B4") for n in range(8)]


@pytest.mark.parametrize("name", ["13-mapping-a2", "13-mapping-a2-tabs"])
def test_mapping_a2_skips_mcu_rows(name: str) -> None:
    assert parse_mapping(fx(name)) == A2_MAP


def test_mapping_a3_five_columns() -> None:
    assert parse_mapping(fx("13-mapping-a3")) == [
        MapRow(npu_id=0, chip_id=0, logic_id=0, phy_id=0, name="Ascend910"),
        MapRow(npu_id=0, chip_id=1, logic_id=1, phy_id=1, name="Ascend910"),
        MapRow(npu_id=1, chip_id=0, logic_id=2, phy_id=2, name="Ascend910"),
    ]


def test_mapping_variants() -> None:
    text = "[WARNING] noise\n" + crlf(ansi(fx("13-mapping-a2").replace("Mcu  ", "MCU  "))) + "\ntrailer\n"
    assert parse_mapping(text) == A2_MAP
    assert parse_mapping(widen(fx("13-mapping-a3"))) == parse_mapping(fx("13-mapping-a3"))


def test_mapping_slot_id_column_after_name() -> None:
    text = (
        "\tNPU ID    Chip ID    Chip Logic ID    Chip Phy-ID    Chip Name      Slot ID\n"
        "\t3         1          7                7              Ascend 910     12\n"
        "\t3         2          -                -              Mcu            12\n"
    )
    assert parse_mapping(text) == [MapRow(3, 1, 7, 7, "Ascend 910", slot_id=12)]


def test_mapping_slot_id_column_first() -> None:
    text = "Slot ID   NPU ID   Chip ID   Chip Logic ID   Chip Name\n5   2   0   2   Ascend 910B3\n"
    assert parse_mapping(text) == [MapRow(2, 0, 2, None, "Ascend 910B3", slot_id=5)]


def test_mapping_header_collapsed_to_single_spaces() -> None:
    text = "NPU ID Chip ID Chip Logic ID Chip Phy-ID Chip Name\n4 1 9 9 Ascend910\n4 2 - - Mcu\n"
    assert parse_mapping(text) == [MapRow(4, 1, 9, 9, "Ascend910")]


@pytest.mark.parametrize("text", ["", fx("10-info-container-8020"), "NPU ID  Chip ID  Chip Logic ID  Chip Name\n"])
def test_mapping_without_rows_raises(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_mapping(text)
    assert caught.value.raw == text


# ---------------------------------------------------------------------------
# npu-smi info -l


@pytest.mark.parametrize("name", ["11-list-a2", "11-list-a2-tabs"])
def test_list_a2(name: str) -> None:
    assert parse_list(fx(name)) == [(n, 1) for n in range(8)]


@pytest.mark.parametrize("name", ["11-list-a3-docstring", "11-list-a3-docstring-tabs"])
def test_list_a3_docstring(name: str) -> None:
    assert parse_list(fx(name)) == [(0, 2)]


def test_list_non_contiguous_with_extra_keys_and_odd_spacing() -> None:
    text = crlf(
        "\tTotal Count : 8\n\n"
        "  npu id:2\n\tProduct Name   : Atlas 300I\n\tSerial Number : 102\n  CHIP COUNT:\t2\n\n"
        "\tNPU ID\t\t: 5\n\tChip Count\t: 1\n"
    )
    assert parse_list(text) == [(2, 2), (5, 1)]


@pytest.mark.parametrize("text", ["", "\tTotal Count : 8\n", fx("10-info-container-8020")])
def test_list_without_npus_raises(text: str) -> None:
    with pytest.raises(ParseError):
        parse_list(text)


def test_list_npu_without_chip_count_raises() -> None:
    with pytest.raises(ParseError, match="NPU ID 1 has no Chip Count"):
        parse_list("NPU ID : 0\nChip Count : 1\nNPU ID : 1\n")


# ---------------------------------------------------------------------------
# npu-smi info -t spod-info


def test_spod_info_a3_fixture() -> None:
    info = parse_spod_info(fx("12-spod-info-a3"))
    assert info == SpodInfo(sdid=167772160, super_pod_size=384, super_pod_id=0, server_index=40)


def test_spod_info_super_pod_id_zero_is_valid() -> None:
    info = parse_spod_info(fx("12-spod-info-a3"))
    assert info is not None and info.super_pod_id == 0


def test_spod_info_spacing_case_crlf() -> None:
    text = crlf("    sdid:167772161\n super pod size :384\n\tSUPER POD ID\t:\t7\nserver index: 41  \n")
    assert parse_spod_info(text) == SpodInfo(167772161, 384, 7, 41)


@pytest.mark.parametrize(
    "text", ["This device does not support querying spod-info.\n", "The command is not supported on this product."]
)
def test_spod_info_not_supported_is_none(text: str) -> None:
    assert parse_spod_info(text) is None


@pytest.mark.parametrize("text", [fx("12-spod-info-invalid-card"), "", "SDID : 5\n"])
def test_spod_info_error_or_partial_raises(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_spod_info(text)
    assert caught.value.raw == text


def test_spod_info_invalid_card_message_shows_tool_text() -> None:
    with pytest.raises(ParseError, match="Invalid card id"):
        parse_spod_info(fx("12-spod-info-invalid-card"))


# ---------------------------------------------------------------------------
# npu-smi info -t board


@pytest.mark.parametrize("name", ["14-board-a2", "14-board-a2-tabs"])
def test_board_fixture(name: str) -> None:
    board = parse_board(fx(name))
    assert len(board) == 19
    assert board["PCI Device ID"] == "0xD802"
    assert board["PCIe Bus Info"] == "0000:C1:00.0"  # colons inside the value
    assert board["Model"] == "NA"
    assert list(board)[:2] == ["NPU ID", "Product Name"]


def test_board_lookup_ignores_case_and_spacing() -> None:
    board = parse_board(crlf("\tpci  device id   :   0xd803  \n"))
    assert board["PCI Device ID"] == "0xd803"
    assert "pci device id" in board
    assert board.get("Chip Count") is None
    with pytest.raises(KeyError):
        board["Chip Count"]


@pytest.mark.parametrize("text", ["", "Invalid card id.\nError parameter of -i\n"])
def test_board_without_keys_raises(text: str) -> None:
    with pytest.raises(ParseError):
        parse_board(text)
