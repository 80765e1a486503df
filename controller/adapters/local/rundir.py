"""The run directory (default ``.agentctl/``): where local serving keeps its state.

- ``daemon.json``: the running daemon (pid, router URL, admin socket); present only while it runs.
- ``admin.sock``: the daemon's admin API (HTTP over a Unix socket: only this user reaches it).
- ``state.json``: the servers the daemon started (agent, version, port, process group) and the
  routes, rewritten on every change; a daemon that starts after a crash stops what it lists.
- ``daemon.lock``: held by the daemon while it runs, so that one run directory has one daemon.
- ``logs/``: one log file per model server, and ``daemon.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["ENV_MARKER", "RunDir", "alive", "ours", "reap_leftovers", "tail"]

#: Set in the environment of every process local serving starts: the absolute run directory.
#: (Not AGENTCTL_RUN_DIR, the --run-dir setting, which a user may export in their shell.)
ENV_MARKER = "AGENTCTL_SERVING_RUN_DIR"

# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS.
_MAX_SOCKET_PATH = 103


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()

    @property
    def daemon_file(self) -> Path:
        return self.path / "daemon.json"

    @property
    def socket(self) -> Path:
        return self.path / "admin.sock"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.path / "daemon.lock"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "daemon.log"

    def server_log(self, agent: str, version: int) -> Path:
        return self.logs / f"{agent}-v{version}.log"

    def prepare(self) -> None:
        """Create the directory (and logs/); refuse a path too long for the admin socket."""
        if len(os.fsencode(self.socket)) > _MAX_SOCKET_PATH:
            raise ValueError(
                f"the run directory {self.path} is too deep for a Unix socket "
                f"({len(os.fsencode(self.socket))} > {_MAX_SOCKET_PATH} bytes); "
                "pass a shorter --run-dir"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        gitignore = self.path / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n", encoding="utf-8")

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def write(path: Path, data: dict[str, Any]) -> None:
        """Write atomically: readers see the old file or the new one, never half of one."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def alive(pid: int) -> bool:
    """Whether a process with this pid runs (it may belong to another user). A child of this
    process that has exited is reaped here, so that it does not linger as a zombie."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel whether it exists
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ours(pid: int, run_dir: RunDir) -> bool | None:
    """Whether ``pid`` runs and was started by local serving of ``run_dir`` (its environment
    carries ENV_MARKER); None where there is no /proc to tell (macOS)."""
    if not Path("/proc/self/environ").exists():
        return None if alive(pid) else False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{ENV_MARKER}={run_dir.path}".encode() in environ.split(b"\0")


def reap_leftovers(run_dir: RunDir) -> list[int]:
    """Kill the model servers (process groups) ``state.json`` lists that are still ours: what a
    daemon that died without cleaning up left behind. Returns the pids it killed."""
    state = RunDir.read(run_dir.state_file) or {}
    servers = [s for a in (state.get("agents") or {}).values() for s in a["versions"].values()]
    servers += state.get("pending") or []
    killed = []
    for server in servers:
        pid = server.get("pid")
        if isinstance(pid, int) and ours(pid, run_dir):  # never when unknown (no /proc)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (read from its last 8 KiB)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
