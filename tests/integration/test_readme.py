"""The README, run as written: its quick start, then "Your first agent", in a copy of the
repository's files (as a fresh clone would have them), with bash and the README's own commands.

The blocks to run are the fenced blocks after a ``<!-- readme-test: ... -->`` comment
(tests/support/readme.py). Only the router's port differs from what the README says: a free one,
given as AGENTCTL_ROUTER_PORT and put in place of 8765 in the commands, so that the test never
takes a port a developer's own `make run` may hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local import processes_of
from tests.support.mlflow_server import free_port
from tests.support.readme import Block, blocks

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
README_PORT = "8765"
#: Only what a newcomer's shell needs; no AGENTCTL_*, MLFLOW_*, KUBECONFIG or make variable
#: (TRACKING_URI, MANIFESTS...) of the caller reaches the README's commands.
KEPT_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM")


def readme_blocks() -> list[Block]:
    return blocks(README.read_text())


def test_the_readme_marks_a_short_quick_start_and_a_whole_first_agent() -> None:
    found = readme_blocks()
    quick = [b for b in found if b.kind == "quickstart"]
    assert len(quick) == 1 and quick[0].lang == "sh"
    commands = quick[0].text
    assert len(commands.splitlines()) <= 30, "the quick start is at most 30 lines"
    assert commands.lstrip().startswith("make run")
    assert "make down" in commands
    files = {b.path: b for b in found if b.kind == "file"}
    agent = files["manifests/agents/echo/agent.py"].text
    assert "(ResponsesAgent)" in agent and "set_model(" in agent
    assert "agents/echo/agent.py" in files["manifests/echo.yaml"].text
    appended = [b for b in found if b.kind == "append"]
    assert appended and "rollout:" in appended[0].text
    assert any("promote echo" in b.text for b in found if b.kind == "first-agent")


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The repository's files copied into tmp_path (mtimes kept, so that make does not install
    again), its .venv a link to this checkout's, a git repository of its own; and the
    environment to run the README's commands in. Teardown stops whatever they started."""
    root = tmp_path / "agentctl"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a file deleted from the working tree is not copied
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to((REPO / ".venv").resolve())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env["AGENTCTL_ROUTER_PORT"] = str(free_port())
    try:
        yield root, env
    finally:
        subprocess.run(["make", "down"], cwd=root, env=env, capture_output=True, timeout=120)
        for pid in processes_of(root / ".agentctl"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run(block: Block, root: Path, env: dict[str, str]) -> str:
    """Run a shell block as written (the router's port aside); it must exit 0. Its stdout."""
    script = block.text.replace(README_PORT, env["AGENTCTL_ROUTER_PORT"])
    done = subprocess.run(
        ["bash", "-euxo", "pipefail", "-c", script],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"README line {block.line}: exit {done.returncode}\n{done.stderr[-6000:]}\n{done.stdout}"
    )
    return done.stdout


def counts(out: str, pattern: str) -> dict[str, int]:
    """`uniq -c` output -> {value: count} for the lines matching ``pattern`` (one group)."""
    found: dict[str, int] = {}
    for line in out.splitlines():
        m = re.fullmatch(rf"\s*(\d+) {pattern}\s*", line)
        if m:
            found[m[2]] = found.get(m[2], 0) + int(m[1])
    return found


def ask(env: dict[str, str], agent: str, text: str) -> str:
    port = env["AGENTCTL_ROUTER_PORT"]
    body = json.dumps({"input": [{"role": "user", "content": text}]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/agents/{agent}/invocations",
        data=body, headers={"content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.loads(answer.read())["output"][0]["content"][0]["text"])


@pytest.mark.timeout(1200)
def test_the_quick_start_and_the_first_agent_work_as_written(
    clone: tuple[Path, dict[str, str]],
) -> None:
    root, env = clone
    found = readme_blocks()

    (quick,) = [b for b in found if b.kind == "quickstart"]
    out = run(quick, root, env)
    assert "Refunds are issued within 5 business days." in out, out
    split = counts(out, r"(?i:x-agentctl-version): (\S+)")
    assert sum(split.values()) == 100, out
    # The example summarizer serves two versions once it declares its named `stable` one.
    served = 2 if "version: stable" in (root / "manifests" / "summarizer.yaml").read_text() else 1
    assert len(split) == served, split
    if served == 2:
        assert min(split.values()) >= 1 and max(split.values()) >= 70, split  # ~90/10
    assert not processes_of(root / ".agentctl"), "make down left processes behind"

    # "Your first agent", in the README's order: write the files, run the commands.
    outputs = []
    for block in found:
        if block.kind in ("file", "append"):
            block.apply_to(root)
        elif block.kind == "first-agent":
            outputs.append(run(block, root, env))
    assert len(outputs) == 2, "two command blocks: the first version, then the canary"
    assert "Echo: hello" in outputs[0], outputs[0]
    echoes = counts(outputs[1], r"(Echo(?: v2)?): hi")
    assert sum(echoes.values()) == 50, outputs[1]
    assert set(echoes) == {"Echo", "Echo v2"} and echoes["Echo"] > echoes["Echo v2"], echoes
    # Promoted: every answer is the second version's.
    assert {ask(env, "echo", "hi") for _ in range(10)} == {"Echo v2: hi"}
