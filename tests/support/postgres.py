"""A throwaway PostgreSQL server on 127.0.0.1 for bench/scale.py's production-like run: Debian's
``postgresql`` package (installed with apt-get when missing, as root), a cluster initialised in
a temporary directory and owned by the ``postgres`` user (PostgreSQL refuses to run as root),
trust authentication on loopback only, stopped and removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.mlflow_server import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.geteuid() != 0:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (as root)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
            check=True, env=env,
        )  # fmt: skip
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent


class Postgres:
    def __init__(self) -> None:
        # A directory of its own, that the postgres user can reach (a caller's temporary
        # directory is root's, mode 0700).
        self.workdir = Path(tempfile.mkdtemp(prefix="agentctl-pg-"))
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.bin = _bindir()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(self._as_postgres(*cmd), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> Postgres:
        """Start it; on failure stop what was started and remove the directory."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8")  # fmt: skip
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "pg.log"),
            "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1", "-w", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            made = subprocess.run(
                self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p",
                                  str(self.port), "-U", "postgres", "mlflow"),
                capture_output=True, text=True,
            )  # fmt: skip
            if made.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {made.stderr}")
            time.sleep(0.5)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                  "-w", "stop"),
                capture_output=True,
            )  # fmt: skip
        shutil.rmtree(self.workdir, ignore_errors=True)
