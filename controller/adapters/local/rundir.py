"""The run directory (default ``.agentctl/``): where local serving keeps its state.

- ``daemon.json``: the running daemon (pid, router URL, admin socket); present only while it runs.
- ``admin.sock``: the daemon's admin API (HTTP over a Unix socket: only this user reaches it).
- ``state.json``: the servers the daemon started (agent, version, port, process group) and the
  routes, rewritten on every change; a daemon that starts after a crash stops what it lists.
- ``daemon.lock``: held by the daemon while it runs, so that one run directory has one daemon.
- ``logs/``: one log file per model server (rotated: :func:`rotate`), and ``daemon.log``.

Everything in it is private to its user: directories 0700, files 0600 (:func:`private_open`),
whatever the umask; a directory made before by a looser version is tightened by
:meth:`RunDir.prepare`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DIR_MODE",
    "ENV_MARKER",
    "FILE_MODE",
    "RunDir",
    "alive",
    "ours",
    "private_open",
    "reap_leftovers",
    "rotate",
    "tail",
]

DIR_MODE = 0o700
FILE_MODE = 0o600

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
        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.logs.mkdir(mode=DIR_MODE, exist_ok=True)
        for directory in (self.path, self.logs):
            os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask; and old dirs
        for old in (*self.path.iterdir(), *self.logs.iterdir()):
            if old.is_file() and not old.is_symlink():
                with contextlib.suppress(OSError):
                    os.chmod(old, FILE_MODE)
        gitignore = self.path / ".gitignore"
        if not gitignore.exists():
            with private_open(gitignore, "w") as fh:
                fh.write("*\n")

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
        with private_open(tmp, "w") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def private_open(path: Path, mode: str = "ab") -> IO[Any]:
    """``open(path, mode)`` ("ab", "a+", "w" or "wb") for a file only its user may read: created
    0600, and made 0600 if it was there before."""
    flags = {"ab": os.O_APPEND, "a+": os.O_APPEND | os.O_RDWR, "w": os.O_TRUNC, "wb": os.O_TRUNC}[
        mode
    ]
    if "+" not in mode:
        flags |= os.O_WRONLY
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def rotate(path: Path, max_bytes: int) -> bool:
    """Keep a log that a process appends to (opened with O_APPEND) under ``max_bytes``: once it
    is larger, its content moves to ``<path>.1`` (replacing the one before) and it starts again
    empty: at most two files of about ``max_bytes`` each. The writer keeps its descriptor (copy
    and truncate, as logrotate's copytruncate: the lines written between the two are lost).
    True if it rotated."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
        backup = path.with_name(path.name + ".1")
        tmp = path.with_name(f".{path.name}.1.tmp")
        with open(path, "rb") as src, private_open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, backup)
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


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


def tail(path: Path, lines: int = 15, since: int = 0) -> str:
    """The last lines of a log file written after its first ``since`` bytes (read from its last
    8 KiB): what one start of a process wrote, not the log's whole history."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(since, end - 8192, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing written)"
