"""`python -m pdwizard.sim SPEC`: a foreground cluster that stops cleanly on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import asyncssh
import pytest

from conftest import listening, next_sim_net
from pdwizard.sim.cluster import marked_pids

ROOT = Path(__file__).resolve().parent.parent


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdwizard.sim", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env)


async def read_until_running(proc: asyncio.subprocess.Process, timeout: float = 20) -> list[str]:
    out: list[str] = []

    async def read() -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError("the sim exited early: " + "".join(out)
                                     + (await proc.stderr.read()).decode())
            out.append(line.decode())
            if "SIMULATED running" in out[-1]:
                return

    await asyncio.wait_for(read(), timeout)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_foreground_cluster(tmp_path, sig):
    net = next_sim_net()
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[[node]]\nname = "p1"\nhost = "127.0.{net}.1"\nport = 0\nip = "192.0.0.1"\n\n'
                    f'[[node]]\nname = "a3"\nhost = "127.0.{net}.2"\nport = 0\nsoc = "A3"\n')
    workdir = tmp_path / "wd"
    proc = await start_cli(str(spec), "--workdir", str(workdir))
    try:
        out = await read_until_running(proc)
        text = "".join(out)
        m = re.search(r"^SIMULATED node p1  ssh -p (\d+) -i (\S+) root@127\.0\.\d+\.1  ip 192\.0\.0\.1  A2 x8$",
                      text, re.M)
        assert m, text
        port, key = int(m.group(1)), m.group(2)
        assert re.search(r"^SIMULATED node a3  ssh -p \d+ -i \S+ root@127\.0\.\d+\.2  ip 127\.0\.\d+\.2  A3 x8$",
                         text, re.M), text
        assert f"SIMULATED client key: {workdir.resolve() / 'client_key'}" in text
        assert f"SIMULATED known_hosts: {workdir.resolve() / 'known_hosts'}" in text
        assert all(line.startswith("SIMULATED") for line in out)
        host = f"127.0.{net}.1"
        async with asyncssh.connect(host, port, username="root", client_keys=[key], agent_path=None,
                                    known_hosts=str(workdir / "known_hosts")) as conn:
            r = await conn.run("hostname; nohup sleep 60 >/dev/null 2>&1 </dev/null &", check=False)
            assert r.stdout == "p1\n"
            assert marked_pids(workdir.resolve() / "nodes")
        proc.send_signal(sig)
        rc = await asyncio.wait_for(proc.wait(), 20)
        rest = (await proc.stdout.read()).decode()
        assert rc == 0, (await proc.stderr.read()).decode()
        assert "SIMULATED cluster stopped" in rest
        assert not listening(host, port)
        assert marked_pids(workdir.resolve() / "nodes") == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bad_spec_exits_2(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[[node]]\nhost = "127.0.1.1"\nsoc = "A9"\n')
    proc = await start_cli(str(spec), "--workdir", str(tmp_path / "wd"))
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and stdout == b""
    assert f"{spec}: node[0].soc:" in stderr.decode() and "fix:" in stderr.decode()
    proc = await start_cli(str(tmp_path / "missing.toml"))
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"file not found" in stderr


async def test_replay_reaches_a_foreground_cluster_over_the_normal_path(tmp_path):
    """The operator's manual path: sim in one terminal, `pdwizard --replay` in another,
    with the session pointing at the key and known_hosts the sim wrote (no --sim)."""
    import tomllib

    import tomli_w
    from simfiles import guide_pair

    spec, session = guide_pair(tmp_path)
    workdir = tmp_path / "w"
    proc = await start_cli(str(spec), "--workdir", str(workdir))
    try:
        lines = await read_until_running(proc)
        key = next(l.split(": ", 1)[1].strip() for l in lines if "client key:" in l)
        known = next(l.split(": ", 1)[1].strip() for l in lines if "known_hosts:" in l)
        data = tomllib.loads(session.read_text())
        data["ssh"].update(identity_file=key, known_hosts=known)
        session.write_text(tomli_w.dumps(data))
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pdwizard", "--replay", str(session), "--dry-run",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
        out, err = await asyncio.wait_for(replay.communicate(), 60)
        assert replay.returncode == 0, out.decode() + err.decode()
        assert "(exit 0)" in out.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
