"""Parser for ``/etc/hccn.conf`` (reference section 9).

``hccn_tool -s`` writes ``name_<phyid>=value`` lines and rewrites a key in place,
so line order is history, not schema: parse line by line, key by key.
"""

from __future__ import annotations

import re

from pdwizard.parsers.text import lines

# Lazy prefix + ``_<digits>`` directly before ``=`` => the split is on the LAST
# ``_<digits>``: send_arp_status_0 -> ("send_arp_status", 0).
_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+?)_(\d+)\s*=\s*(.*?)\s*$")


def parse_hccn_conf(text: str | None) -> dict[int, dict[str, str]]:
    """``{phy_id: {name: value}}``; names lower-cased, values raw.

    Blank, comment and unparseable lines are ignored; unknown names are kept so
    the UI can show them. A repeated key keeps its last value (a manual edit
    that appended a duplicate). Empty or missing file -> ``{}``.
    """
    conf: dict[int, dict[str, str]] = {}
    for line in lines(text):
        match = _LINE.match(line)
        if match:
            name, phy_id, value = match.groups()
            conf.setdefault(int(phy_id), {})[name.lower()] = value
    return conf
