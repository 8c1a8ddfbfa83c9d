"""Benchmark: the built-in PD proxy against its floor, in the same run.

- floor: the load client makes the prefill and the decode calls itself (the same bodies and
  X-Request-Id the proxy sends), straight to the backends: no proxy;
- proxy: the same client sends one request to `python pdwizard/proxy.py`, which makes both calls.

Setup, three processes on this machine: the fake backends (tests/pd_backends.py: one prefill and
one decode server in one process, zero token delay, so the numbers are the HTTP path alone), the
proxy (started as on a node: `python pdwizard/proxy.py ...`, its log at the default level, INFO:
one line per request, to a file), and the load client (this script, aiohttp). Each request asks for
`--tokens` tokens; streaming responses carry one SSE event per token.

For each mode (not streaming, streaming) and concurrency (1, 32, 128): latency p50/p99 (to the
last byte) and requests per second, floor and proxy, each for `--duration` seconds after a warm-up,
in alternating slices so that both see the same machine.

Run: python bench/proxy.py [--duration 4] [--rounds 4] [--tokens 16] [--concurrency 1 32 128]
Goal: under 1 ms added at p50 and 3 ms at p99 at concurrency 1; at concurrency 128, at least 50%
of the floor's requests per second (the guide's example proxy manages about a tenth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))
from pd_backends import free_ports  # noqa: E402

from pdwizard.proxy import prefill_request  # noqa: E402

PATH = "/v1/completions"
PROMPT = "Who are you? " * 16


async def wait_up(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"{what} did not come up within 20 s")


class Client:
    """The load client: the same requests, direct (floor) or through the proxy."""

    def __init__(self, session: aiohttp.ClientSession, p: str, d: str, proxy: str, tokens: int) -> None:
        self.session, self.p, self.d, self.proxy, self.tokens = session, p, d, proxy, tokens
        self.errors = 0

    def request(self, stream: bool) -> dict:
        return {"model": "fake-model", "prompt": PROMPT, "max_tokens": self.tokens, "temperature": 0, "stream": stream}

    async def _read(self, r: aiohttp.ClientResponse, stream: bool) -> None:
        if r.status != 200:
            self.errors += 1
        if stream:
            async for _ in r.content.iter_any():
                pass
        else:
            await r.read()

    async def direct(self, stream: bool) -> None:
        req = self.request(stream)
        headers = {"Content-Type": "application/json", "X-Request-Id": str(uuid.uuid4())}
        async with self.session.post(self.p + PATH, data=json.dumps(prefill_request(req)).encode(),
                                     headers=headers) as r:
            kv = json.loads(await r.read()).get("kv_transfer_params")
        body = json.dumps({**req, "kv_transfer_params": kv}).encode()
        async with self.session.post(self.d + PATH, data=body, headers=headers) as r:
            await self._read(r, stream)

    async def via_proxy(self, stream: bool) -> None:
        body = json.dumps(self.request(stream)).encode()
        async with self.session.post(self.proxy + PATH, data=body, headers={"Content-Type": "application/json"}) as r:
            await self._read(r, stream)


async def measure(call, stream: bool, conc: int, duration: float) -> tuple[list[float], int]:
    """`conc` workers call for `duration` s: the latencies (s) of the requests that completed within
    that window, and their count (requests still running at the end are left out of both)."""
    lats: list[float] = []
    start = time.perf_counter()
    stop_at = start + duration

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await call(stream)
            t1 = time.perf_counter()
            if t1 <= stop_at:
                lats.append(t1 - t0)

    await asyncio.gather(*(worker() for _ in range(conc)))
    return lats, len(lats)


async def compare(client: Client, stream: bool, conc: int, duration: float, rounds: int) -> dict:
    """Floor and proxy in alternating slices, so both see the same machine (this box is shared, and
    its speed drifts): `rounds` slices each of duration/rounds s, after a warm-up of each."""
    lats: dict[str, list[float]] = {"floor": [], "proxy": []}
    done = {"floor": 0, "proxy": 0}
    calls = {"floor": client.direct, "proxy": client.via_proxy}
    for call in calls.values():
        await measure(call, stream, conc, 0.3)  # warm-up: open the connections
    for _ in range(rounds):
        for name, call in calls.items():
            ls, n = await measure(call, stream, conc, duration / rounds)
            lats[name] += ls
            done[name] += n
    return {name: (pct(lats[name], 0.5), pct(lats[name], 0.99), done[name] / duration) for name in calls}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def main(args: argparse.Namespace) -> int:
    p_port, d_port, x_port = free_ports(3)
    log = tempfile.NamedTemporaryFile(prefix="pdwizard-proxy-bench-", suffix=".log", delete=False)
    backends = subprocess.Popen([sys.executable, str(ROOT / "tests" / "pd_backends.py"), str(p_port), str(d_port)],
                                stdout=subprocess.DEVNULL)
    proxy = subprocess.Popen([sys.executable, str(ROOT / "pdwizard" / "proxy.py"), "--host", "127.0.0.1",
                              "--port", str(x_port), "--prefiller-hosts", "127.0.0.1", "--prefiller-ports", str(p_port),
                              "--decoder-hosts", "127.0.0.1", "--decoder-ports", str(d_port),
                              "--log-level", args.log_level], stderr=log, cwd=tempfile.gettempdir())
    print(f"setup: 3 processes on {os.cpu_count()} CPUs: fake backends (tests/pd_backends.py, 1 prefill + 1 decode "
          f"server, zero token delay) | proxy (python pdwizard/proxy.py, log at {args.log_level} to a file) | "
          f"load client (this process, aiohttp). floor = the client calls prefill then decode itself. "
          f"{args.tokens} tokens per request (streams: one SSE event each); {args.duration:g} s per path and row "
          f"in {args.rounds} alternating slices; latency to the last byte.\n", flush=True)
    rows = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_up(session, f"http://127.0.0.1:{p_port}/health", backends, "backends")
            await wait_up(session, f"http://127.0.0.1:{x_port}/healthcheck", proxy, "proxy")
            client = Client(session, f"http://127.0.0.1:{p_port}", f"http://127.0.0.1:{d_port}",
                            f"http://127.0.0.1:{x_port}", args.tokens)
            for stream in (False, True):
                for conc in args.concurrency:
                    row = {"mode": "stream" if stream else "json", "conc": conc,
                           **await compare(client, stream, conc, args.duration, args.rounds)}
                    rows.append(row)
                    print_row(row, header=len(rows) == 1)
            errors = client.errors
    finally:
        for proc in (proxy, backends):
            proc.terminate()
            proc.wait(10)
        log.close()
    log_lines = sum(1 for _ in open(log.name))
    os.unlink(log.name)
    print(f"\nerrors: {errors}; proxy log: {log_lines} lines at {args.log_level}; "
          f"{args.tokens} tokens per request; {os.cpu_count()} CPUs; aiohttp {aiohttp.__version__}; "
          f"uvloop: {'yes' if has_uvloop() else 'no'}")
    return check(rows, errors)


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def print_row(row: dict, header: bool) -> None:
    if header:
        print(f"{'mode':6} {'conc':>4} | {'floor p50':>9} {'p99':>7} {'req/s':>7} | {'proxy p50':>9} {'p99':>7} "
              f"{'req/s':>7} | {'added p50':>9} {'p99':>7} | {'% floor':>7}")
        print("-" * 101)
    f, x = row["floor"], row["proxy"]
    print(f"{row['mode']:6} {row['conc']:>4} | {f[0]:>8.2f}ms {f[1]:>5.2f}ms {f[2]:>7.0f} | {x[0]:>8.2f}ms "
          f"{x[1]:>5.2f}ms {x[2]:>7.0f} | {x[0] - f[0]:>+8.2f}ms {x[1] - f[1]:>+5.2f}ms | {100 * x[2] / f[2]:>6.0f}%",
          flush=True)


def check(rows: list[dict], errors: int) -> int:
    ok = errors == 0
    for row in rows:
        f, x = row["floor"], row["proxy"]
        if row["conc"] == 1:
            good = x[0] - f[0] < 1.0 and x[1] - f[1] < 3.0
            print(f"goal {row['mode']} c=1: added p50 {x[0] - f[0]:.2f} ms < 1, p99 {x[1] - f[1]:.2f} ms < 3: "
                  f"{'met' if good else 'MISSED'}")
            ok &= good
        if row["conc"] == 128:
            good = x[2] >= 0.5 * f[2]
            print(f"goal {row['mode']} c=128: {100 * x[2] / f[2]:.0f}% of the floor's req/s >= 50%: "
                  f"{'met' if good else 'MISSED'}")
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=4.0,
                    help="seconds measured per path, mode and concurrency (default 4)")
    ap.add_argument("--rounds", type=int, default=4, help="alternating slices per measurement (default 4)")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per request (default 16)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    ap.add_argument("--log-level", default="INFO", help="the proxy's --log-level (default INFO, as deployed)")
    sys.exit(asyncio.run(main(ap.parse_args())))
