"""Write a sim spec and a matching session file for a test: the guide's 1P2D by default.

Each call gets its own loopback subnet so tests never collide on an address.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import tomli_w

_subnets = itertools.count(40)


def guide_pair(tmp: Path, faults: dict[str, dict] | None = None, *, session_extra: dict | None = None,
               instances: list[dict] | None = None) -> tuple[Path, Path]:
    """(spec path, session path) for p1 (prefill 0,1), d1 and d2 (decode 6,7).

    `faults` maps a node name to extra spec keys for that node.
    """
    faults = faults or {}
    net = next(_subnets)
    names = ["p1", "d1", "d2"]
    spec_nodes, session_nodes = [], []
    for i, name in enumerate(names, start=1):
        host = f"127.{net}.1.{i}"
        spec_nodes.append({"name": name, "host": host, "port": 2222, "ip": f"192.0.0.{i}",
                           "nic": "eth0", "soc": "A2", "npus": 8, **faults.get(name, {})})
        session_nodes.append({"name": name, "host": host, "ip": f"192.0.0.{i}", "nic": "eth0"})
    session = {
        "schema_version": 1,
        "name": "test-1p2d",
        "ssh": {"user": "root", "port": 2222},
        "nodes": session_nodes,
        "instances": instances or [
            {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
            {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
            {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700},
        ],
        "model": {"path": "/model/Qwen3-30B-A3B", "served_name": "qwen3-moe"},
        **(session_extra or {}),
    }
    spec_path, session_path = tmp / "spec.toml", tmp / "session.toml"
    spec_path.write_text(tomli_w.dumps({"node": spec_nodes}))
    session_path.write_text(tomli_w.dumps(session))
    return spec_path, session_path
