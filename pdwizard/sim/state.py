"""The node state directory the fake tools read (``$PDWIZARD_SIM_NODE``). Stdlib only.

Layout (written by :class:`pdwizard.sim.cluster.SimCluster` at start; few files, because
creating files dominates a start, and the sh tools *source* them with ``.``, a builtin)::

    facts.json          node facts (render.py documents the keys; ``vllm`` holds the spec's
                        vllm_startup_s / token_delay_ms / vllm_fault for the fake vllm), for people and tests
    facts.marshal       the same facts for the fake npu-smi (marshal loads faster than json)
    host.sh             shell assignments: hostname, hostname_I, hostname_i (outputs of
                        `hostname`, `-I`, `-i`), ip_o / ip_o4 / ip_o6 (`ip -o [-4|-6] addr`),
                        ip_a / ip_a4 / ip_a6 (the same without -o), ip_l / ip_lo (`ip [-o] link`),
                        ip_route (`ip route`), ip_route_get ("gateway nic src"); sim_python and
                        sim_pkg_root (the python and import root bin/vllm runs pdwizard.sim.vllm with)
    tool_delay          seconds to sleep per hccn_tool / npu-smi call (absent = no delay)
    busy_left           hccn_tool calls still to answer "busy" (busy_first; absent = none)
    hccn.lock           exists while an hccn_tool call runs; holds its pid (a dead pid = stale)
    hccn/<phy>.sh       per physical device: out_<cmd>, err_<cmd>, rc_<cmd> for every cmd in
                        render.HCCN_GET_COMMANDS (exact stdout, stderr, exit status of
                        `hccn_tool -i <phy> -<cmd> -g`), ping_dead (non-empty: every ping from
                        this device times out), ping_block (addresses it cannot ping, space
                        separated: on A3 its sibling die)
    hccn/reach.sh       reach ADDR: true if this node's NPUs can ping ADDR (live NPU IPs of the
                        spec minus ping_loss)
    hccn/usage.sh       usage_<cmd> / usage_all: the parameter lists printed on usage errors
    procs/<key>.json    NPU process rows for `npu-smi info` (see register_npu_processes)

``procs/*.json`` is read on every `npu-smi info`: the fake ``vllm serve`` (pdwizard/sim/vllm.py,
key ``vllm-<pid>``, one row per TP rank's NPU) or a test registers the NPUs it holds with
:func:`register_npu_processes` and removes them with
:func:`unregister_npu_processes`; a file whose ``owner_pid`` is dead is ignored, so a
killed process stops showing up without cleaning up.
"""

from __future__ import annotations

import os


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not holding anything
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def read_npu_processes(state_dir: str | os.PathLike) -> list[dict]:
    """Every process row currently registered on the node, in file-name order."""
    procs = os.path.join(os.fspath(state_dir), "procs")
    rows: list[dict] = []
    try:
        names = sorted(n for n in os.listdir(procs) if n.endswith(".json"))
    except FileNotFoundError:
        return rows
    if not names:
        return rows
    import json  # only when there is something to read: npu-smi starts faster without it

    for name in names:
        try:
            with open(os.path.join(procs, name)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        owner = data.get("owner_pid")
        if owner is not None and not _alive(int(owner)):
            continue
        for r in data.get("rows", []):
            rows.append({"npu": int(r["npu"]), "chip": int(r.get("chip", 0)), "pid": int(r["pid"]),
                         "name": str(r.get("name", "")), "mem_mb": int(r.get("mem_mb", 0))})
    return rows


def register_npu_processes(state_dir: str | os.PathLike, key: str, rows: list[dict],
                           owner_pid: int | None = None) -> str:
    """Show ``rows`` (``{npu, chip, pid, name, mem_mb}``) in `npu-smi info` until unregistered.

    ``owner_pid``: the rows disappear by themselves once that process is gone.
    Written atomically (temp file + rename); returns the file's path.
    """
    import json

    procs = os.path.join(os.fspath(state_dir), "procs")
    os.makedirs(procs, exist_ok=True)
    path = os.path.join(procs, f"{key}.json")
    tmp = os.path.join(procs, f".{key}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump({"owner_pid": owner_pid, "rows": rows}, f)
    os.replace(tmp, path)
    return path


def unregister_npu_processes(state_dir: str | os.PathLike, key: str) -> None:
    try:
        os.unlink(os.path.join(os.fspath(state_dir), "procs", f"{key}.json"))
    except FileNotFoundError:
        pass


def write_facts(state_dir: str | os.PathLike, facts: dict) -> None:
    """facts.json for people and tests, facts.marshal for the fake npu-smi (no json import)."""
    import json
    import marshal

    base = os.fspath(state_dir)
    with open(os.path.join(base, "facts.json"), "w") as f:
        json.dump(facts, f, indent=1)
    with open(os.path.join(base, "facts.marshal"), "wb") as f:
        marshal.dump(facts, f)


def read_facts(state_dir: str | os.PathLike) -> dict:
    import marshal

    with open(os.path.join(os.fspath(state_dir), "facts.marshal"), "rb") as f:
        return marshal.load(f)
