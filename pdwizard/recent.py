"""Recent session files, for the wizard's first step (`~/.pdwizard/recent.json`).

The state directory is `$PDWIZARD_STATE_DIR` when set (tests use it), else `~/.pdwizard`.
Only paths are kept, never the sessions' contents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pdwizard.fsutil import atomic_write_text

KEEP = 10


def state_dir() -> Path:
    return Path(os.environ.get("PDWIZARD_STATE_DIR") or Path.home() / ".pdwizard")


def recent_sessions() -> list[Path]:
    """The last sessions opened or exported, newest first, those that still exist."""
    try:
        paths = json.loads((state_dir() / "recent.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in paths if isinstance(p, str) and Path(p).is_file()][:KEEP]


def remember(path: Path) -> None:
    """Put `path` first in the recent list (best effort: a read-only home is not an error)."""
    path = path.resolve()
    paths = [str(path)] + [str(p) for p in recent_sessions() if p.resolve() != path]
    try:
        state_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_text(state_dir() / "recent.json", json.dumps(paths[:KEEP], indent=1) + "\n")
    except OSError:
        pass
