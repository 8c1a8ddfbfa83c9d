"""`pdwizard` command line: a contract that operators' scripts rely on.

Flags are only ever added, never renamed or dropped. Exit codes: 0 every step
passed, 1 a check, the launch, a verification or the stop failed, 2 invalid input;
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), after stopping what was started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from importlib import resources
from pathlib import Path
from typing import Sequence

from pdwizard import __version__
from pdwizard.errors import InputError, PdwError
from pdwizard.progress import make_progress
from pdwizard.replay import ReplayOptions, run_replay


def asset(name: str) -> Path:
    """A file shipped inside the package (demo spec, demo session, styles)."""
    return Path(str(resources.files("pdwizard").joinpath("assets", name)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pdwizard",
        description="Deploy vLLM-Ascend prefill-decode disaggregation: discover nodes, check the "
                    "NPU fabric, render, launch, verify through the proxy, and stop.",
        epilog="exit codes: 0 every step passed, 1 a check, the launch, a verification or the stop "
               "failed, 2 invalid input",
    )
    p.add_argument("--replay", metavar="FILE", type=Path,
                   help="run the flow headless from a session file (TOML)")
    p.add_argument("--dry-run", action="store_true",
                   help="stop before anything is launched")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the deployment up after the verification (default: stop it at the end); "
                        "with --sim/--demo it still dies with the simulator when pdwizard exits")
    p.add_argument("--stop", action="store_true",
                   help="only stop what the session's run directories name on every node (works after "
                        "a failed launch, a crash, or from another machine)")
    p.add_argument("--status", action="store_true",
                   help="only show what runs for the session on every node, and whether it answers")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="write what was produced (report.json) into DIR")
    p.add_argument("--sim", metavar="FILE", type=Path,
                   help="run against a simulated cluster described by FILE (started and stopped here)")
    p.add_argument("--demo", action="store_true",
                   help="the built-in SIMULATED cluster of the guide (3 Atlas 800T A2 nodes, 8 NPUs each)")
    p.add_argument("--open", metavar="FILE", type=Path, dest="open_session",
                   help="start the interactive wizard on this session file")
    p.add_argument("--headless", action="store_true",
                   help="with --demo or --sim: run the flow headless, as --replay does (the default "
                        "when there is no terminal)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="log every remote command with its node, exit status and duration")
    p.add_argument("--version", action="version", version=f"pdwizard {__version__}")
    return p


def options_from(args: argparse.Namespace) -> ReplayOptions:
    """Resolve --demo / --sim / --replay into one set of options, or raise InputError."""
    if args.demo and args.sim:
        raise InputError("--demo and --sim cannot be combined", key="--sim",
                         hint="--demo already runs the built-in simulated cluster; drop one of them")
    sim = asset("demo-cluster.toml") if args.demo else args.sim
    session = args.replay or (asset("demo-session.toml") if args.demo else None)
    if session is None:
        raise InputError("no session given", key="--replay",
                         hint="pass --replay SESSION.toml, or --demo to try the simulated cluster; "
                              "on a terminal, pdwizard alone starts the interactive wizard")
    if args.stop and args.status:
        raise InputError("--stop and --status cannot be combined", key="--stop",
                         hint="run --status, then --stop (or the other way round)")
    action = "stop" if args.stop else "status" if args.status else "run"
    if action != "run":
        for flag, given in (("--dry-run", args.dry_run), ("--keep-running", args.keep_running)):
            if given:
                raise InputError(f"--{action} cannot be combined with {flag}", key=flag,
                                 hint=f"--{action} launches nothing: drop {flag}")
    for flag, path in (("--replay", session), ("--sim", sim)):
        if path is not None and not path.is_file():
            raise InputError(f"file not found: {path}", key=flag,
                             hint="check the path (relative paths are taken from the current directory)")
    return ReplayOptions(session_path=session, sim_spec=sim, dry_run=args.dry_run,
                         out_dir=args.out, verbose=args.verbose, keep_running=args.keep_running,
                         action=action)


class Terminated(Exception):
    """SIGTERM arrived: the run was cancelled (and cleaned up) on the way out."""


async def _run(opts: ReplayOptions, progress) -> int:
    """The replay as a task that SIGTERM cancels like Ctrl-C does: the launch and the replay
    stop what they started before pdwizard exits (SIGKILL cannot be caught: `--stop` then)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    got: list[int] = []

    def on_term() -> None:
        got.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        return await run_replay(opts, progress)
    except asyncio.CancelledError:
        if got:
            raise Terminated() from None
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


#: Flags that only the headless run knows: any of them means headless.
_HEADLESS_ONLY = ("replay", "dry_run", "keep_running", "stop", "status", "out", "headless")


def wants_tui(args: argparse.Namespace, interactive: bool) -> bool:
    """The wizard runs on a terminal unless a headless-only flag is given; `--open` always
    asks for it (and is refused without a terminal)."""
    if args.open_session is not None:
        return True
    if any(getattr(args, flag) for flag in _HEADLESS_ONLY):
        return False
    return interactive or not (args.demo or args.sim)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_tui(args: argparse.Namespace) -> int:
    """The interactive wizard (imports Textual only here: the headless run does not need it)."""
    if not _interactive():
        raise InputError("the interactive wizard needs a terminal", key="--open" if args.open_session else None,
                         hint="run pdwizard --replay SESSION.toml (or --demo) for the headless flow")
    if args.demo and args.sim:
        raise InputError("--demo and --sim cannot be combined", key="--sim",
                         hint="--demo already runs the built-in simulated cluster; drop one of them")
    from pdwizard.app import PdWizardApp
    from pdwizard.wizard import Wizard

    sim = asset("demo-cluster.toml") if args.demo else args.sim
    for flag, path in (("--open", args.open_session), ("--sim", sim)):
        if path is not None and not path.is_file():
            raise InputError(f"file not found: {path}", key=flag, hint="check the path")
    if args.open_session is not None:
        wizard = Wizard.open(args.open_session, sim_spec=sim)
    elif args.demo:
        wizard = Wizard.open(asset("demo-session.toml"), sim_spec=sim)
        wizard.source = None  # the packaged file is never overwritten: export asks where
    else:
        wizard = Wizard(sim_spec=sim)

    async def run() -> int:
        app = PdWizardApp(wizard)
        try:
            code = await app.run_async()
        finally:
            await wizard.close()
        return code or 0

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pdwizard` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if wants_tui(args, _interactive()):
            return run_tui(args)
        opts = options_from(args)
        progress = make_progress(verbose=opts.verbose)
        return asyncio.run(_run(opts, progress))
    except PdwError as exc:
        print(f"pdwizard: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pdwizard: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("pdwizard: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
