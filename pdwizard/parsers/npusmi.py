"""Parsers for ``npu-smi info`` and its ``-m``, ``-l``, ``-t spod-info``, ``-t board``
views (reference sections 10-14).

At least three table widths exist (classic <= 25.x, a wider 26.0, mainline), so
nothing here uses column offsets: table rows are split on ``|``, lists on
runs of whitespace, key/value views on the first colon, and columns are located
by their header labels. ``npu-smi`` prints its errors on stdout, so any output
that holds none of the expected content raises :class:`ParseError` carrying the
raw text -- an unreadable answer is never an empty success.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pdwizard.errors import ParseError
from pdwizard.parsers.text import lines, meaningful_lines

Soc = Literal["A2", "A3"]

# ---------------------------------------------------------------------------
# small value helpers


def _int(value: str | None) -> int | None:
    """Decimal or 0x-hex int; ``-``, ``NA`` and anything else -> None."""
    value = (value or "").strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
        return int(value, 16)
    return None


def _float(value: str | None) -> float | None:
    """Float for power readings; ``-`` (A3 die 1) and ``NA`` -> None."""
    value = (value or "").strip()
    return float(value) if re.fullmatch(r"\d+(?:\.\d+)?", value) else None


def _canon(label: str) -> str:
    """Label identity for lookups: case, spacing and punctuation do not matter."""
    return re.sub(r"[^a-z0-9]", "", label.casefold())


def _fail(what: str, text: str | None, detail: str = "") -> ParseError:
    """ParseError quoting what the tool did print, so the operator sees the cause."""
    said = meaningful_lines(text)
    shown = "; ".join(said[:10]) if said else "(empty output)"
    reason = f"{what}: {detail}" if detail else what
    return ParseError(f"{reason}; output was: {shown}", raw=text or "")


# ---------------------------------------------------------------------------
# npu-smi info (the big table)


@dataclass(frozen=True)
class ChipRow:
    """One chip (die) of the table: row 1 (NPU, name, health, power, temp) + row 2.

    ``phy_id`` is only printed on A3 (``Chip  Phy-ID``); it is the id that
    ``hccn_tool -i`` takes. ``power_w`` is None for ``-`` (A3 die 1) or ``NA``.
    ``health`` is the raw word (``OK``, ``Warning``, ``UNKNOWN``...).
    """

    npu_id: int
    chip_id: int
    phy_id: int | None
    name: str
    health: str
    power_w: float | None
    temp_c: int | None
    aicore_pct: int | None
    hbm_used_mb: int | None
    hbm_total_mb: int | None
    bus_id: str | None

    @property
    def health_ok(self) -> bool:
        return self.health.casefold() == "ok"


@dataclass(frozen=True)
class NpuProcess:
    """A process holding a chip (preflight: is the NPU busy?). ``name`` may be blank."""

    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mb: int | None


@dataclass(frozen=True)
class NpuSmiInfo:
    """Everything ``npu-smi info`` says; ``noise`` = non-table lines (driver warnings)."""

    version: str | None
    chips: list[ChipRow] = field(default_factory=list)
    processes: list[NpuProcess] = field(default_factory=list)
    soc: Soc | None = None
    noise: list[str] = field(default_factory=list)


_BORDER = re.compile(r"^\+[-=+]*\+?$")
_VERSION = re.compile(r"npu-smi\s+(\S+)(?:\s+Version\s*:\s*(\S+))?", re.IGNORECASE)
_ROW1_HEAD = re.compile(r"^(\d+)\s+(\S.*)$")  # "0     910B1"
_ROW2_HEAD = re.compile(r"^(\d+)(?:\s+(\d+))?$")  # "0" (A2) / "1     3" (A3 chip, phy)
_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]+$")
_PHY_ID = re.compile(r"phy[\s_-]*id", re.IGNORECASE)
_PAIR = re.compile(r"([\w.-]+)\s*/\s*([\w.-]+)")  # "52553/ 65536" -> one token


def _cells(line: str) -> list[str]:
    """Cells of a ``| a | b |`` row, stripped; outer pipes removed."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return [cell.strip() for cell in body.split("|")]


def _metrics(cell: str) -> list[str]:
    """Whitespace tokens of a metrics cell with ``used / total`` glued into one."""
    return _PAIR.sub(r"\1/\2", cell).split()


def _labels(cell: str, count: int) -> list[str] | None:
    """Header labels of a metrics cell, if they line up with ``count`` values."""
    for splitter in (r"\t|\s{2,}", r"\s+"):
        labels = [label for label in re.split(splitter, cell.strip()) if label]
        if len(labels) == count:
            return labels
    return None


def _metric(values: list[str], labels: list[str] | None, key: str, default: int | None) -> str | None:
    """Value under the header label containing ``key``; positional default otherwise."""
    if labels is not None:
        for label, value in zip(labels, values):
            if key in _canon(label):
                return value
        return None
    if default is not None and -len(values) <= default < len(values):
        return values[default]
    return None


def _split_pair(token: str | None) -> tuple[int | None, int | None]:
    used, _, total = (token or "").partition("/")
    return _int(used), _int(total)


@dataclass
class _TableState:
    """Mutable scan state while walking the table rows top to bottom."""

    row1_labels: str = ""
    row2_labels: str = ""
    phy_header: bool = False
    in_processes: bool = False
    proc_columns: dict[str, int] = field(default_factory=dict)
    pending: list[str] | None = None
    chips: list[ChipRow] = field(default_factory=list)
    processes: list[NpuProcess] = field(default_factory=list)


def parse_info(text: str | None) -> NpuSmiInfo:
    """Parse the ``npu-smi info`` table; raise ParseError if it holds no chip rows."""
    version: str | None = None
    noise: list[str] = []
    state = _TableState()
    for line in lines(text):
        stripped = line.strip()
        if not stripped or _BORDER.match(stripped):
            continue
        if not stripped.startswith("|"):
            noise.append(stripped)
            continue
        cells = _cells(stripped)
        found = _VERSION.search(cells[0]) if version is None else None
        if found:
            version = found.group(2) or found.group(1)
            continue
        _table_row(state, cells, text)
    if state.pending is not None:
        raise _fail("npu-smi info", text, f"NPU row {state.pending[0]!r} has no chip row after it")
    if not state.chips:
        raise _fail("npu-smi info printed no NPU table", text)
    if version is None:  # a layout that prints the banner outside the box
        found = next((m for m in map(_VERSION.search, noise) if m), None)
        version = (found.group(2) or found.group(1)) if found else None
    soc = _detect_soc(state.chips, state.phy_header)
    return NpuSmiInfo(version, state.chips, state.processes, soc, noise)


def _table_row(state: _TableState, cells: list[str], text: str | None) -> None:
    """Dispatch one ``|`` row: header, chip row 1/2, process row, or ignorable."""
    if not cells[0][:1].isdigit():  # data rows start with an id; the rest is labels or prose
        _header_row(state, cells)
    elif state.in_processes:
        _process_row(state, cells)
    elif state.pending is not None and _ROW2_HEAD.match(cells[0]) and len(cells) >= 2:
        state.chips.append(_chip(state, state.pending, cells))
        state.pending = None
    elif _is_row1(cells):
        if state.pending is not None:
            raise _fail("npu-smi info", text, f"NPU row {state.pending[0]!r} has no chip row after it")
        state.pending = cells


def _header_row(state: _TableState, cells: list[str]) -> None:
    """Remember which section we are in and the metric labels of each row kind."""
    joined = " ".join(cells).casefold()
    if "no running process" in joined:
        return
    if "process" in joined:
        state.in_processes = True
        state.proc_columns = _process_columns(cells)
    elif "health" in joined:
        state.in_processes = False
        state.row1_labels = cells[2] if len(cells) > 2 else ""
    elif "bus-id" in joined or "bus id" in joined:
        state.row2_labels = cells[2] if len(cells) > 2 else ""
        state.phy_header = state.phy_header or bool(_PHY_ID.search(cells[0]))


def _is_row1(cells: list[str]) -> bool:
    """``| <npu> <name> | <health> | ... |``: name not numeric, health not a bus id.

    Any health word is accepted (raw); only ``OK`` counts as healthy later.
    """
    head = _ROW1_HEAD.match(cells[0])
    return (
        len(cells) >= 3
        and head is not None
        and not head.group(2).isdigit()
        and not _BUS_ID.match(cells[1])
        and not cells[1].isdigit()
    )


def _chip(state: _TableState, row1: list[str], row2: list[str]) -> ChipRow:
    """Combine a row pair into a ChipRow, metrics located by header label."""
    head1 = _ROW1_HEAD.match(row1[0])
    head2 = _ROW2_HEAD.match(row2[0])
    assert head1 is not None and head2 is not None  # checked by the caller
    values1 = _metrics(row1[2])
    labels1 = _labels(state.row1_labels, len(values1))
    values2 = _metrics(row2[2]) if len(row2) > 2 else []
    labels2 = _labels(state.row2_labels, len(values2))
    hbm = _metric(values2, labels2, "hbm", -1)
    used, total = _split_pair(hbm)
    return ChipRow(
        npu_id=int(head1.group(1)),
        chip_id=int(head2.group(1)),
        phy_id=_int(head2.group(2)),
        name=" ".join(head1.group(2).split()),
        health=row1[1],
        power_w=_float(_metric(values1, labels1, "power", 0)),
        temp_c=_int(_metric(values1, labels1, "temp", 1)),
        aicore_pct=_int(_metric(values2, labels2, "aicore", 0)),
        hbm_used_mb=used,
        hbm_total_mb=total,
        bus_id=row2[1] or None,
    )


def _process_columns(header: list[str]) -> dict[str, int]:
    """Cell index of npu/chip/pid/name/memory from the process header row."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        label = _canon(cell)
        if "npu" in label:
            columns.setdefault("npu", index)
        if "chip" in label:
            columns.setdefault("chip", index)
        if "memory" in label:
            columns.setdefault("memory", index)
        elif "name" in label:
            columns.setdefault("name", index)
        elif label.endswith("id") and "process" in label or label == "pid":
            columns.setdefault("pid", index)
    defaults = {"npu": 0, "chip": 0, "pid": 1, "name": 2, "memory": 3}
    return {key: columns.get(key, default) for key, default in defaults.items()}


def _process_row(state: _TableState, cells: list[str]) -> None:
    """``| 4  0 | 957687 | pt_main_thread | 49207 |``; blank names allowed."""
    cols = state.proc_columns or _process_columns([])

    def cell(key: str) -> str:
        index = cols[key]
        return cells[index] if index < len(cells) else ""

    if cols["npu"] == cols["chip"]:
        ids = cell("npu").split()
        npu, chip = (ids[0], ids[1]) if len(ids) == 2 else ("", "")
    else:
        npu, chip = cell("npu"), cell("chip")
    npu_id, chip_id, pid = _int(npu), _int(chip), _int(cell("pid"))
    if npu_id is None or chip_id is None or pid is None:
        return  # "No running processes found in NPU n" and other prose rows
    memory = re.match(r"\d+", cell("memory"))
    state.processes.append(
        NpuProcess(
            npu_id=npu_id,
            chip_id=chip_id,
            pid=pid,
            name=cell("name"),
            memory_mb=int(memory.group()) if memory else None,
        )
    )


def _chip_family(name: str) -> str:
    """``Ascend 910B4`` -> ``910b4``; ``Ascend910`` -> ``910``."""
    return re.sub(r"^ascend", "", re.sub(r"\s+", "", name.casefold()))


def _detect_soc(chips: list[ChipRow], phy_header: bool) -> Soc | None:
    """A3 from the Phy-ID header, 910B names => A2, plain 910 (or 2 dies/NPU) => A3.

    Names win over the die count so a multi-chip card of another family
    (e.g. a 310P Duo) is not called A3; the caller cross-checks with ``-t board``.
    """
    if phy_header:
        return "A3"
    families = {_chip_family(chip.name) for chip in chips}
    if families and all(f.startswith("910b") for f in families):
        return "A2"
    if families and all(f == "910" or f.startswith(("910_93", "910c")) for f in families):
        return "A3"
    dies = Counter(chip.npu_id for chip in chips)
    if any(count > 1 for count in dies.values()) and not any(f.startswith("310") for f in families):
        return "A3"
    return None


# ---------------------------------------------------------------------------
# npu-smi info -m


@dataclass(frozen=True)
class MapRow:
    """One compute chip: NPU id + chip id (npu-smi) <-> logic id, phy id (hccn_tool, A3)."""

    npu_id: int
    chip_id: int
    logic_id: int
    phy_id: int | None
    name: str
    slot_id: int | None = None


_MAP_COLUMNS = (  # (canonical label fragment, field), most specific first
    ("logic", "logic"),
    ("phy", "phy"),
    ("slot", "slot"),
    ("name", "name"),
    ("npu", "npu"),
    ("chip", "chip"),
)


_MAP_LABEL = re.compile(
    r"npu\s*id|chip\s*logic\s*id|logic\s*id|chip\s*phy[\s_-]*id|phy[\s_-]*id|chip\s*id"
    r"|chip\s*name|slot\s*id|\S+",
    re.IGNORECASE,
)


def _map_header(line: str) -> list[str] | None:
    """Field names of the ``-m`` header columns, or None if this is not the header.

    Columns are padded with 2+ spaces; if a renderer collapsed them to one, fall
    back to the known multi-word labels so the header is still understood.
    """
    for names in (re.split(r"\t|\s{2,}", line.strip()), _MAP_LABEL.findall(line)):
        fields = []
        for name in filter(None, names):
            label = _canon(name)
            fields.append(next((f for key, f in _MAP_COLUMNS if key in label), label))
        if {"npu", "chip", "logic"} <= set(fields) and len(set(fields)) == len(fields):
            return fields
    return None


def _map_row(tokens: list[str], fields: list[str]) -> MapRow | None:
    """Numeric columns around the (possibly multi-word) chip name; None for MCU/junk."""
    name_at = fields.index("name") if "name" in fields else len(fields)
    after = len(fields) - name_at - 1 if name_at < len(fields) else 0
    if len(tokens) < len(fields):
        return None
    values = dict(zip(fields[:name_at], tokens[:name_at]))
    if after:
        values.update(zip(fields[name_at + 1 :], tokens[len(tokens) - after :]))
    name = " ".join(tokens[name_at : len(tokens) - after])
    npu, chip, logic = _int(values.get("npu")), _int(values.get("chip")), _int(values.get("logic"))
    if npu is None or chip is None or logic is None or _canon(name) == "mcu":
        return None  # MCU rows print "-" as logic id; they are not compute devices
    return MapRow(npu, chip, logic, _int(values.get("phy")), name, _int(values.get("slot")))


def parse_mapping(text: str | None) -> list[MapRow]:
    """Compute-chip rows of ``npu-smi info -m``; columns from the header (4, 5, + Slot ID)."""
    fields: list[str] | None = None
    rows: list[MapRow] = []
    for line in lines(text):
        if not line.strip():
            continue
        if fields is None:
            fields = _map_header(line)
            continue
        row = _map_row(line.split(), fields)
        if row is not None:
            rows.append(row)
    if fields is None:
        raise _fail("npu-smi info -m printed no mapping header", text)
    if not rows:
        raise _fail("npu-smi info -m listed no compute chips", text)
    return rows


# ---------------------------------------------------------------------------
# key/value views: -l, -t spod-info, -t board

_KV = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _()./%+-]*?)\s*:\s*(.*?)\s*$")


def _key_values(text: str | None) -> list[tuple[str, str]]:
    """``\\t%-30s : %s`` lines as (key, value), key whitespace collapsed, both raw."""
    pairs = []
    for line in lines(text):
        match = _KV.match(line)
        if match:
            pairs.append((" ".join(match.group(1).split()), match.group(2)))
    return pairs


def parse_list(text: str | None) -> list[tuple[int, int]]:
    """``(npu_id, chip_count)`` per ``NPU ID`` block of ``npu-smi info -l``.

    Counted from the NPU ID lines, not ``Total Count`` (a container may see a
    subset); ids need not be contiguous. An NPU ID without a Chip Count is
    truncated output and raises.
    """
    result: list[tuple[int, int]] = []
    npu: int | None = None
    for key, value in _key_values(text):
        label = _canon(key)
        if label == "npuid":
            if npu is not None:
                raise _fail("npu-smi info -l", text, f"NPU ID {npu} has no Chip Count")
            npu = _int(value)
        elif label == "chipcount" and npu is not None:
            count = _int(value)
            if count is None:
                raise _fail("npu-smi info -l", text, f"NPU ID {npu} has Chip Count {value!r}")
            result.append((npu, count))
            npu = None
    if npu is not None:
        raise _fail("npu-smi info -l", text, f"NPU ID {npu} has no Chip Count")
    if not result:
        raise _fail("npu-smi info -l listed no NPU", text)
    return result


@dataclass(frozen=True)
class SpodInfo:
    """A3 super-pod identity of one die: ``sdid`` -> rank table ``super_device_id``.

    ``super_pod_id`` 0 is a valid id. Size and server index are optional because
    only sdid and super_pod_id feed the rank table.
    """

    sdid: int
    super_pod_size: int | None
    super_pod_id: int
    server_index: int | None


_NOT_SUPPORTED = re.compile(r"\bnot\s+support", re.IGNORECASE)


def parse_spod_info(text: str | None) -> SpodInfo | None:
    """Super-pod identity; None when the device does not support the query (A2)."""
    values = {_canon(key): _int(value) for key, value in _key_values(text)}
    sdid, pod_id = values.get("sdid"), values.get("superpodid")
    if sdid is None or pod_id is None:
        if _NOT_SUPPORTED.search(text or ""):
            return None
        raise _fail("npu-smi info -t spod-info", text, "no SDID / Super Pod ID")
    return SpodInfo(sdid, values.get("superpodsize"), pod_id, values.get("serverindex"))


class KeyValues(dict[str, str]):
    """A dict with keys as printed whose lookups ignore case and spacing.

    ``board["PCI Device ID"]`` and ``board["pci device id"]`` both work, so
    callers never depend on a driver's capitalisation; iteration shows raw keys.
    """

    def _key(self, key: object) -> object:
        if not isinstance(key, str) or dict.__contains__(self, key):
            return key
        wanted = _canon(key)
        return next((raw for raw in self if _canon(raw) == wanted), key)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, self._key(key), default)


def parse_board(text: str | None) -> KeyValues:
    """Generic ``key : value`` view (``-t board``); first occurrence of a key wins."""
    board = KeyValues()
    for key, value in _key_values(text):
        board.setdefault(key, value)
    if not board:
        raise _fail("npu-smi info -t board printed no key/value lines", text)
    return board
