"""Preflight: what must hold before anything launches, from the session and what the nodes hold.

The other checks of the issue's preflight list live where their data is:

- the session alone (ports and kv_ports used twice, RPC / kv port ranges, Mooncake's
  reserved range and engine ids, Mooncake's prefill TP >= decode TP, torchair sub-options,
  eager with torchair, the Ascend scheduler's token budget): `pdwizard.render`, refused by
  `render_problems` right after the session loads (exit 2); tensor_parallel_size against the
  device count: `pdwizard.models` (exit 2);
- one node's identity and NPUs (ip, nic, devices present, healthy and free) and version
  agreement across nodes: `pdwizard.nodechecks`.

What needs both the session and the nodes is here; it runs after the node checks:

| check      | what                                                               | failure          |
|------------|--------------------------------------------------------------------|------------------|
| model      | [model] path is a directory with a config.json on every instance   | node state, 1    |
|            | node, and config.json is the same file everywhere (sha256)         |                  |
| profile    | the installed vllm-ascend (and vLLM) is the release the session's  | node state, 1    |
|            | [stack] profile describes                                          |                  |
| tp_pairing | the connector's prefill/decode TP rule for non-MLA models, the     | input, 2         |
|            | model type read from config.json                                   |                  |
| startup    | start-up refusals that depend on the model type (ACL graph and     | input, 2         |
|            | torchair support)                                                  |                  |

Verdict texts are data (`pdwizard/checks/rules.toml`). Pure: nothing here touches a node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pdwizard.checks import ok, verdict
from pdwizard.discovery import model_configs, model_mla, model_type
from pdwizard.errors import InputError
from pdwizard.models import Session
from pdwizard.profiles import Profile, available_profiles, load_profile
from pdwizard.render import additional_config_of, profile_for
from pdwizard.report import CheckResult, NodeFacts, Status

# A [model] path that is not a local path and looks like "org/name" may be a hub model id,
# which vLLM downloads when no such directory exists.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: Profile versions that pin no release: any installed version is accepted (and noted).
UNPINNED = ("", "main")
_SHOWN_KEYS = 4  # differing config.json keys named in a message


@dataclass
class Preflight:
    """Every verdict (for the report) and the ones that are input errors (exit 2)."""

    results: list[CheckResult] = field(default_factory=list)
    input_errors: list[InputError] = field(default_factory=list)

    def fail_input(self, result: CheckResult, key: str, source: str | None) -> None:
        self.results.append(result)
        self.input_errors.append(InputError(result.message or "", source=source, key=key, hint=result.hint))


def run_preflight(session: Session, facts: Mapping[str, NodeFacts], source: str | None = None) -> Preflight:
    """Every preflight check over the discovered nodes (nodes not discovered are left out:
    their connection failure is reported already)."""
    out = Preflight()
    out.results.extend(check_model(session, facts))
    out.results.extend(check_profile(session, facts))
    check_tp_pairing(session, facts, out, source)
    check_startup(session, facts, out, source)
    return out


def _instance_nodes(session: Session, facts: Mapping[str, NodeFacts]) -> list[str]:
    return [n for n in dict.fromkeys(i.node for i in session.instances) if n in facts]


# ---------------------------------------------------------------------------------------
# model


def check_model(session: Session, facts: Mapping[str, NodeFacts]) -> list[CheckResult]:
    """The model directory and its config.json on every instance node, and the same config.json."""
    path = session.model.path
    results: list[CheckResult] = []
    shas: dict[str, str] = {}
    for name in _instance_nodes(session, facts):
        m = facts[name].model
        if m is None or m.present is None:
            results.append(verdict("model_unprobed", Status.FAIL, check="model", node=name, value=path))
        elif not m.present:
            hub = not path.startswith(("/", ".", "~")) and _HUB_ID.fullmatch(path)
            results.append(verdict("model_not_local" if hub else "model_missing",
                                   Status.WARN if hub else Status.FAIL, check="model", node=name, value=path))
        elif m.config_sha256 is None:
            results.append(verdict("model_config_missing", Status.FAIL, check="model", node=name, value=path))
        else:
            shas[name] = m.config_sha256
            if m.config is None:
                results.append(verdict("model_config_unreadable", Status.FAIL, check="model", node=name,
                                       value=path))
            else:
                results.append(ok("model", name, value=f"{path} (model_type {model_type(m.config) or '?'}, "
                                                       f"config.json sha256 {m.config_sha256[:12]})"))
    results.extend(_config_agreement(shas, facts))
    return results


def _config_agreement(shas: dict[str, str], facts: Mapping[str, NodeFacts]) -> list[CheckResult]:
    """config.json must be the same file on every node: the nodes outside the largest group of
    equal files (ties: the group of the first node) fail, naming the keys that differ."""
    groups: dict[str, list[str]] = {}
    for name, sha in shas.items():
        groups.setdefault(sha, []).append(name)
    if len(groups) < 2:
        return []
    ref_sha = max(groups, key=lambda s: len(groups[s]))  # max keeps the first of equals: session order
    ref = groups[ref_sha][0]
    results = []
    for name, sha in shas.items():
        if sha == ref_sha:
            continue
        diff = _config_diff(facts[ref].model.config, facts[name].model.config, ref)  # type: ignore[union-attr]
        results.append(verdict(
            "model_config_differs", Status.FAIL, check="model_config", node=name,
            value=f"{diff}; sha256 {sha[:12]} here, {ref_sha[:12]} on {ref}",
            expected=ref, path=facts[name].model.path,  # type: ignore[union-attr]
        ))
    return results


def _config_diff(ref: dict[str, Any] | None, mine: dict[str, Any] | None, ref_name: str) -> str:
    if ref is None or mine is None:
        return "one of the two files is not a JSON object"
    keys = [k for k in dict.fromkeys([*ref, *mine]) if ref.get(k, _MISSING) != mine.get(k, _MISSING)]
    if not keys:
        return "same keys and values, different bytes"
    shown = [f"{k} ({ref_name}: {_short(ref.get(k, _MISSING))}, here: {_short(mine.get(k, _MISSING))})"
             for k in keys[:_SHOWN_KEYS]]
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return "keys differ: " + ", ".join(shown) + more


_MISSING = object()


def _short(value: Any) -> str:
    if value is _MISSING:
        return "absent"
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------
# installed versions against the profile


def _release(version: str) -> str:
    """A comparable release: lower case, no leading v, no local part (`+g1234abc`, `+empty`)."""
    return version.strip().lower().removeprefix("v").split("+", 1)[0]


def _profiles_for(installed: str) -> list[str]:
    """Shipped profiles made for this vllm-ascend release."""
    return [name for name in available_profiles()
            if _release(load_profile(name).vllm_ascend) == _release(installed)]


def check_profile(session: Session, facts: Mapping[str, NodeFacts]) -> list[CheckResult]:
    """The session's profile describes one vllm-ascend release (and the vLLM it pairs with): every
    instance node must run it. A profile that pins no release (main) accepts any, with a warning.
    A missing package is nodechecks' version_missing, not repeated here."""
    profile = load_profile(session.stack.profile)
    nodes = _instance_nodes(session, facts)
    results: list[CheckResult] = []
    for pkg, label, want in (("vllm_ascend", "vllm-ascend", profile.vllm_ascend), ("vllm", "vLLM", profile.vllm)):
        installed = {n: facts[n].packages[pkg] for n in nodes if facts[n].packages.get(pkg)}
        if not installed:
            continue
        if want.strip().lower() in UNPINNED:
            if pkg == "vllm_ascend":
                spread = ", ".join(f"{n}={v}" for n, v in installed.items())
                results.append(verdict("profile_unpinned", Status.WARN, check="profile", node="-",
                                       value=f"{label} {spread}", expected=profile.name))
            continue
        for name, have in installed.items():
            if _release(have) == _release(want):
                results.append(ok("profile", name, value=f"{label} {have} (profile {profile.name})"))
                continue
            fits = [p for p in _profiles_for(facts[name].packages.get("vllm_ascend", "")) if p != profile.name]
            if pkg == "vllm" and not fits:  # the right vllm-ascend, built for another vLLM
                rule = "profile_vllm_mismatch"
            else:
                rule = "profile_version_mismatch" if fits else "profile_version_unsupported"
            results.append(verdict(
                rule, Status.FAIL, check="profile", node=name, value=f"{label} {have}",
                expected=f"{label} {want}", profile=profile.name, version=profile.vllm_ascend,
                fits=" or ".join(f'"{p}"' for p in fits), shipped=", ".join(available_profiles()),
            ))
    return results


# ---------------------------------------------------------------------------------------
# rules that depend on the model type


def check_tp_pairing(session: Session, facts: Mapping[str, NodeFacts], out: Preflight,
                     source: str | None = None) -> None:
    """The connector's prefill/decode TP rule for non-MLA models (profile `non_mla_tp`: equal or
    multiple). MLA models replicate the KV across TP ranks, so any sizes pair. When the model
    type is unknown nothing is added here: the render step keeps the connector's tp_differs
    warning (render_all with model_mla None)."""
    profile, c = profile_for(session)
    insts = session.instances
    pre = [i for i, x in enumerate(insts) if x.role == "prefill"]
    dec = [i for i, x in enumerate(insts) if x.role == "decode"]
    if c.non_mla_tp is None or not pre or not dec:
        return
    tps = {insts[i].tensor_parallel_size for i in (*pre, *dec)}
    mla = model_mla(session, facts)
    if mla is None:
        return
    kind = "MLA" if mla else "non-MLA"
    sizes = (f"prefill TP {', '.join(str(insts[i].tensor_parallel_size) for i in pre)}, "
             f"decode TP {', '.join(str(insts[i].tensor_parallel_size) for i in dec)}")
    if mla or len(tps) == 1:
        out.results.append(ok("tp_pairing", "-", value=f"{sizes}; {kind} model, {c.kv_connector}"))
        return
    mt = _agreed_model_type(session, facts) or "?"
    common = {"connector": c.kv_connector, "profile": profile.name, "model_type": mt}
    if c.non_mla_tp == "equal":  # every instance's TP equals the first prefill's
        rule, pairs = "tp_not_equal", [(i, pre[0]) for i in (*pre[1:], *dec)
                                       if insts[i].tensor_parallel_size != insts[pre[0]].tensor_parallel_size]
    else:  # "multiple": each prefill TP is a multiple of each decode TP
        rule, pairs = "tp_not_multiple", [
            (i, j) for i in dec
            for j in [next((j for j in pre
                            if insts[j].tensor_parallel_size % insts[i].tensor_parallel_size), None)]
            if j is not None]
    for i, other in pairs:
        key = f"instances[{i}].tensor_parallel_size"
        out.fail_input(verdict(
            rule, Status.FAIL, check="tp_pairing", node=insts[i].node,
            value=str(insts[i].tensor_parallel_size), expected=str(insts[other].tensor_parallel_size),
            key=key, label=insts[i].label, other=f"instances[{other}] ({insts[other].label})", **common,
        ), key, source)


def _agreed_model_type(session: Session, facts: Mapping[str, NodeFacts]) -> str | None:
    """config.json's model_type when every instance node has one config and they agree."""
    configs = model_configs(session, facts)
    types = {model_type(c) for c in configs.values()}
    if not configs or len(types) != 1:
        return None
    return types.pop()


def check_startup(session: Session, facts: Mapping[str, NodeFacts], out: Preflight,
                  source: str | None = None) -> None:
    """Start-up refusals that depend on the model type (profile [startup]; additional-config-keys.md,
    check_ascend_config): ACL graph (not eager, torchair off) for some model types, and torchair
    (on, not eager) for model types it does not support. Eager with torchair on is refused by render."""
    mt = _agreed_model_type(session, facts)
    if mt is None:
        return
    profile: Profile = load_profile(session.stack.profile)
    rules = profile.startup
    for i, inst in enumerate(session.instances):
        if inst.eager or inst.node not in facts:
            continue
        additional = additional_config_of(session, i)
        torchair = additional.get("torchair_graph_config")
        torchair_on = isinstance(torchair, Mapping) and torchair.get("enabled") is True
        common = {"label": inst.label, "version": profile.vllm_ascend, "model_type": mt}
        if not torchair_on and any(t in mt.lower() for t in rules.acl_graph_refused):
            key = f"instances[{i}].enforce_eager"
            out.fail_input(verdict("acl_graph_refused", Status.FAIL, check="startup", node=inst.node,
                                   value=mt, key=key, **common), key, source)
        elif torchair_on and rules.torchair_model_types and not any(t in mt.lower() for t in rules.torchair_model_types):
            own = (inst.additional_config or {}).get("torchair_graph_config")
            where = f"instances[{i}]" if isinstance(own, Mapping) and "enabled" in own else "model"
            key = f"{where}.additional_config.torchair_graph_config.enabled"
            out.fail_input(verdict("torchair_model_refused", Status.FAIL, check="startup", node=inst.node,
                                   value=mt, key=key, types=", ".join(rules.torchair_model_types), **common),
                           key, source)


__all__ = ["Preflight", "check_model", "check_profile", "check_startup", "check_tp_pairing", "run_preflight"]
