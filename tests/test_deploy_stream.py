"""RemotePool.stream: long-running commands line by line, over real SSH to the simulator."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from conftest import pid_alive, wait_until
from test_deploy_support import pool_for

from pdwizard.remote.pool import RemotePool


async def test_lines_arrive_in_order_and_the_stream_ends_with_the_command(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    async with pool_for(cluster) as pool:
        script = 'i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; printf "no newline"'
        lines = [ln async for ln in pool.stream("p1", ["sh", "-c", script])]
    assert lines == [f"line {i}" for i in range(500)] + ["no newline"]


async def test_leaving_early_kills_the_remote_command(sim_cluster_factory, tmp_path) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    log = tmp_path / "app.log"
    log.write_text("first\n")
    commands = []
    async with pool_for(cluster, on_command=commands.append) as pool:
        stream = pool.stream("p1", ["sh", "-c", 'echo "$$"; exec tail -n +1 -F "$1"', "sh", str(log)])
        async with contextlib.aclosing(stream) as lines:
            pid = int(await anext(lines))
            assert await anext(lines) == "first"
            with log.open("a") as f:
                f.write("second\n")
            assert await anext(lines) == "second"
            assert pid_alive(pid)
        await wait_until(lambda: not pid_alive(pid), 5, "the remote tail to be killed")
        # the connection is still usable afterwards
        assert (await pool.run("p1", ["echo", "ok"])).stdout == "ok\n"
    assert commands and commands[0].command.startswith("sh -c")


async def test_cancelling_the_reader_task_kills_the_remote_command(sim_cluster_factory, tmp_path) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    log = tmp_path / "app.log"
    log.write_text("")
    pids: list[int] = []

    async def read(pool: RemotePool) -> None:
        async for line in pool.stream("p1", ["sh", "-c", 'echo "$$"; exec tail -F "$1"', "sh", str(log)]):
            pids.append(int(line))

    async with pool_for(cluster) as pool:
        task = asyncio.create_task(read(pool))
        await wait_until(lambda: bool(pids), 5, "the stream to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: not pid_alive(pids[0]), 5, "the remote tail to be killed")


async def test_long_lines_come_in_bounded_pieces(sim_cluster_factory) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    async with pool_for(cluster) as pool:
        lines = [ln async for ln in pool.stream(
            "p1", ["sh", "-c", "head -c 2500 /dev/zero | tr '\\0' x; echo; echo end"], max_line=1000)]
    assert lines == ["x" * 1000, "x" * 1000, "x" * 500, "end"]


async def test_streams_leave_sessions_for_commands(sim_cluster_factory, tmp_path) -> None:
    cluster = await sim_cluster_factory({"name": "p1"})
    log = tmp_path / "app.log"
    log.write_text("x\n")
    async with pool_for(cluster, max_sessions_per_node=3) as pool:
        assert pool.stream_capacity == 1
        first = pool.stream("p1", ["tail", "-n", "+1", "-F", str(log)])
        second = pool.stream("p1", ["tail", "-n", "+1", "-F", str(log)])
        async with contextlib.aclosing(first) as a, contextlib.aclosing(second) as b:
            assert await anext(a) == "x"
            waiting = asyncio.create_task(anext(b))  # over the stream capacity: waits for a slot
            results = await asyncio.gather(*(pool.run("p1", ["echo", str(i)]) for i in range(4)))
            assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
            assert not waiting.done()
            await a.aclose()
            assert await asyncio.wait_for(waiting, 5) == "x"
