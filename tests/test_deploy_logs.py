"""Live log tails: one channel per log, prefixed lines in order, bounded memory at any rate."""

from __future__ import annotations

import re

from conftest import wait_until
from test_deploy_support import plan, pool_for, standin

from pdwizard.deploy import LogSource, LogTail, launch, status, stop
from pdwizard.deploy.plan import ProcessSpec

FAST = 'i=0; while :; do echo "n $i"; i=$((i + 1)); done'


def logger(name: str, node, script: str = FAST) -> ProcessSpec:
    """A process that only writes its log (health is never asked: these plans are launched
    with a stand-in server alongside, or the launch result is not awaited for health)."""
    return ProcessSpec.make(name, node.name, "decode", 1, ["sh", "-c", script], health_host=node.host)


async def test_lines_come_prefixed_and_in_order_per_process(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"}, {"name": "d1"})
    p1, d1 = cluster.nodes
    deploy = plan("l1", standin("p1-prefill-0", p1, env={"STANDIN_SPAM": "300"}),
                  standin("d1-decode-0", d1, "decode", env={"STANDIN_SPAM": "200"}))
    async with pool_for(cluster) as pool:
        result = await launch(pool, deploy, poll_interval=0.05)
        assert result.ok, result.lines()
        later = await status(pool, ["p1", "d1"], "l1")  # a later run knows the logs from the run dir
        sources = [LogSource(p.node, p.name) for p in later.processes]
        got: dict[str, list[str]] = {"p1-prefill-0": [], "d1-decode-0": []}
        prefixed: list[str] = []
        async with LogTail(pool, "l1", sources) as tail:
            async for line in tail:
                got[line.process].append(line.text)
                prefixed.append(line.prefixed)
                assert line.dropped == 0
                if all(sum(t.startswith("spam") for t in v) == n
                       for v, n in ((got["p1-prefill-0"], 300), (got["d1-decode-0"], 200))):
                    break
        await stop(pool, ["p1", "d1"], "l1", grace_s=2)
    for name, n in (("p1-prefill-0", 300), ("d1-decode-0", 200)):
        assert got[name][0].startswith("INFO stand-in vllm starting")  # from this launch's header on
        assert [t for t in got[name] if t.startswith("spam")] == [f"spam {i:08d}" for i in range(n)]
    assert "p1-prefill-0 | spam 00000299" in prefixed and "d1-decode-0 | spam 00000199" in prefixed


async def test_a_fast_logger_keeps_memory_bounded_and_order(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    deploy = plan("l2", logger("p1-fast-0", p1), timeouts={"decode": 0.1})
    peak = 0
    async with pool_for(cluster) as pool:
        # the logger never answers HTTP: keep it running past the (tiny) deadline
        result = await launch(pool, deploy, poll_interval=0.05, cleanup_on_failure=False)
        assert result.processes["p1-fast-0"].pid is not None
        tail = LogTail(pool, "l2", LogSource.of(deploy.processes), max_lines=100)

        def watch(line) -> None:
            nonlocal peak
            peak = max(peak, tail.buffered)

        tail.on_line = watch
        async with tail:
            await wait_until(lambda: tail.received["p1-fast-0"] > 30_000, 20, "the logger to write lines")
            assert tail.buffered <= 100 and len(tail.recent("p1-fast-0")) == 100
            previous, skipped, seen = None, 0, 0
            async for line in tail:
                number = int(line.text.split()[1])
                if previous is not None:
                    assert number - previous - 1 == line.dropped  # gaps are exactly what was dropped
                skipped += line.dropped
                previous = number
                seen += 1
                if seen >= 500:
                    break
        await stop(pool, ["p1"], "l2", grace_s=2)
    assert peak <= 100
    assert skipped > 0 and tail.dropped["p1-fast-0"] >= skipped
    recent = tail.recent("p1-fast-0")
    assert len(recent) == 100 and all(re.fullmatch(r"n \d+", t) for t in recent)


async def test_more_logs_than_stream_slots_share_one_channel(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    (p1,) = cluster.nodes
    specs = [logger(f"p1-log-{i}", p1, f'i=0; while [ $i -lt 50 ]; do echo "{i}:$i"; i=$((i + 1)); done; sleep 30')
             for i in range(3)]
    deploy = plan("l3", *specs, timeouts={"decode": 0.1})
    async with pool_for(cluster, max_sessions_per_node=3) as pool:
        assert pool.stream_capacity == 1
        await launch(pool, deploy, poll_interval=0.05, cleanup_on_failure=False)
        got: dict[str, list[str]] = {s.name: [] for s in specs}
        async with LogTail(pool, "l3", LogSource.of(specs)) as tail:
            async for line in tail:
                got[line.process].append(line.text)
                if all(len(v) >= 50 for v in got.values()):
                    break
            # the shared channel leaves the node's command sessions free
            assert (await pool.run("p1", ["echo", "free"])).stdout == "free\n"
        await stop(pool, ["p1"], "l3", grace_s=2)
    for i, spec in enumerate(specs):
        assert got[spec.name][:50] == [f"{i}:{n}" for n in range(50)]
