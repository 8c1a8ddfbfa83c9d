"""Simulated Ascend cluster over real SSH (asyncssh servers on 127.0.x.y).

Public API (imported lazily, so the fake ``npu-smi`` can import
``pdwizard.sim.render`` without pulling in asyncssh or pydantic)::

    load_spec(path) -> SimSpec          spec_from_dict(data, source) -> SimSpec
    SimSpec, NodeSpec                   demo_spec_path() -> Path
    SimCluster(spec, workdir=None)      SimNode
    register_npu_processes / unregister_npu_processes / read_npu_processes
"""

from __future__ import annotations

__all__ = [
    "NodeSpec", "SimCluster", "SimNode", "SimSpec", "demo_spec_path", "load_spec", "read_npu_processes",
    "register_npu_processes", "spec_from_dict", "unregister_npu_processes",
]

_WHERE = {
    "NodeSpec": "spec", "SimSpec": "spec", "demo_spec_path": "spec", "load_spec": "spec",
    "spec_from_dict": "spec", "SimCluster": "cluster", "SimNode": "cluster",
    "register_npu_processes": "state", "unregister_npu_processes": "state", "read_npu_processes": "state",
}


def __getattr__(name: str):  # no `typing` import: the fake npu-smi imports this package
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pdwizard.sim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"pdwizard.sim.{module}"), name)
    globals()[name] = value
    return value
