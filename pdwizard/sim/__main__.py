"""`python -m pdwizard.sim [SPEC] [--workdir DIR]`: a simulated cluster in the foreground.

Starts every node of SPEC (default: the built-in demo, the guide's 1P2D), prints how to
reach each one, and runs until SIGINT / SIGTERM, then stops cleanly (exit 0). A bad spec
prints the problem on stderr and exits 2; a node that cannot listen exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from pdwizard.errors import EXIT_INPUT, EXIT_OK, InputError, PdwError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pdwizard.sim",
                                description="Run a SIMULATED Ascend cluster (SSH servers on 127.0.x.y).")
    p.add_argument("spec", nargs="?", type=Path, help="sim spec TOML (default: the built-in demo cluster)")
    p.add_argument("--workdir", type=Path, default=Path(".pdwizard-sim"),
                   help="where keys, known_hosts and node files go (default: ./.pdwizard-sim)")
    p.add_argument("--user", default="root", help="user name shown in the ssh commands (any is accepted)")
    return p


async def _serve(args: argparse.Namespace) -> int:
    from pdwizard.sim.cluster import SimCluster
    from pdwizard.sim.spec import demo_spec_path, load_spec

    spec_path = args.spec or demo_spec_path()
    spec = load_spec(spec_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = SimCluster(spec, workdir=args.workdir)
    await cluster.start()
    try:
        print(f"SIMULATED cluster: {len(cluster.nodes)} node(s) from {spec_path} (workdir {cluster.workdir})",
              flush=True)
        for n in cluster.nodes:
            note = ""
            if n.spec.unreachable:
                note = "  [unreachable: connection refused]"
            elif n.spec.auth_fail:
                note = "  [auth_fail: the client key is rejected]"
            print(f"SIMULATED node {n.name}  {n.ssh_command(cluster.client_key_path, args.user)}  "
                  f"ip {n.ip}  {n.spec.soc} x{n.spec.npus}{note}", flush=True)
        print(f"SIMULATED client key: {cluster.client_key_path}", flush=True)
        print(f"SIMULATED known_hosts: {cluster.known_hosts_path}", flush=True)
        print("SIMULATED with OpenSSH add: -o UserKnownHostsFile=" f"{cluster.known_hosts_path}", flush=True)
        print("SIMULATED point a session at it: in the session's [ssh] set user = \"" + args.user + "\", "
              f"identity_file = \"{cluster.client_key_path}\", known_hosts = \"{cluster.known_hosts_path}\", "
              "and give each [[nodes]] the host and port above (or run: pdwizard --sim SPEC --replay SESSION)",
              flush=True)
        print("SIMULATED running; Ctrl-C (SIGINT) or SIGTERM stops it", flush=True)
        await stop.wait()
    finally:
        await cluster.stop()
    print("SIMULATED cluster stopped", flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except PdwError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
