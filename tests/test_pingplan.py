"""The ping plan: never a same-node pair, the full matrix when it fits or is asked
for, and beyond the budget a sample that still reaches every node and every NPU."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pdwizard.pingplan import Endpoint, plan_pings


def cluster(nodes: int, npus: int) -> dict[str, list[Endpoint]]:
    return {f"n{i}": [Endpoint(f"n{i}", d, f"29.0.{i + 1}.{d + 1}") for d in range(npus)]
            for i in range(nodes)}


def pairs(plan) -> set[tuple[str, int, str, int]]:
    return {(p.src.node, p.src.device, p.dst.node, p.dst.device)
            for ps in plan.by_node.values() for p in ps}


def test_guide_1p2d_is_the_full_matrix():
    eps = {"p1": cluster(1, 2)["n0"], "d1": cluster(2, 2)["n1"], "d2": cluster(3, 2)["n2"]}
    plan = plan_pings(eps)
    assert plan.mode == "full" and plan.size == plan.full_size == 24
    assert "24 pings over 3 nodes" in plan.describe()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 8), st.sampled_from(["auto", "full"]), st.integers(1, 64))
def test_never_same_node_and_full_means_every_pair(nodes, npus, mode, budget):
    eps = cluster(nodes, npus)
    plan = plan_pings(eps, mode=mode, budget=budget)
    got = pairs(plan)
    assert all(src != dst for src, _, dst, _ in got)
    everything = {(a, s.device, b, t.device) for a in eps for b in eps if a != b
                  for s in eps[a] for t in eps[b]}
    assert plan.full_size == len(everything)
    if plan.mode == "full":
        assert got == everything
    else:
        assert all(len(ps) <= budget for ps in plan.by_node.values())
        assert got <= everything and len(got) == plan.size  # no pair twice


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 20), st.integers(2, 8))
def test_sample_reaches_every_node_and_every_npu(nodes, npus):
    eps = cluster(nodes, npus)
    rounds = -(-npus // (nodes - 1))  # full rounds of one ping per other node, >= NPUs
    budget = rounds * (nodes - 1)
    plan = plan_pings(eps, mode="auto", budget=budget)
    got = pairs(plan)
    for a in eps:
        assert {dst for src, _, dst, _ in got if src == a} == set(eps) - {a}
        assert {d for src, d, _, _ in got if src == a} == {e.device for e in eps[a]}
    targets = {(dst, d) for _, _, dst, d in got}
    assert targets == {(n, e.device) for n in eps for e in eps[n]}


def test_sixteen_nodes_of_eight_stay_within_the_budget():
    plan = plan_pings(cluster(16, 8), budget=48)
    assert plan.mode == "sampled" and plan.full_size == 16 * 8 * 120
    assert max(len(p) for p in plan.by_node.values()) == 48
    assert "every other node reached, every NPU sends, every NPU is pinged" in plan.describe()


def test_off_plans_nothing():
    plan = plan_pings(cluster(3, 2), mode="off")
    assert plan.size == 0 and "off" in plan.describe()


def test_a_budget_too_small_claims_only_what_holds():
    plan = plan_pings(cluster(60, 8), budget=48)
    text = plan.describe()
    assert plan.covers["nodes"] is False and "every other node reached" not in text
