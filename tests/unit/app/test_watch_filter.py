"""`agentctl up` re-plans on manifest and source edits, not on what apply and serving write."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import watchfiles

from controller.app.manager import watch_filter


@pytest.mark.parametrize(
    ("path", "seen"),
    [
        ("repo/manifests/bot.yaml", True),
        ("repo/manifests/agents/bot/agent.py", True),
        ("repo/manifests/agents/bot/config.yaml", True),
        ("repo/mlflow.db", False),
        ("repo/mlflow.db-journal", False),
        ("repo/mlruns/0/meta.yaml", False),
        ("repo/mlartifacts/1/model/MLmodel", False),
        ("repo/.agentctl/state.json", False),
        ("elsewhere/run/state.json", False),  # the --run-dir, wherever it is
        ("repo/.git/index", False),
        # what editors and tools write beside the file being saved
        ("repo/manifests/sedYqvEO4", False),  # sed -i
        ("repo/manifests/.bot.yaml.swp", False),  # vim
        ("repo/manifests/.bot.yaml.swx", False),
        ("repo/manifests/bot.yaml~", False),
        ("repo/manifests/4913", False),  # vim's can-I-write check
        ("repo/manifests/.#bot.yaml", False),  # emacs lock
        ("repo/manifests/#bot.yaml#", False),  # emacs auto-save
        ("repo/manifests/bot.yaml.tmp", False),
        ("repo/manifests/.goutputstream-XK3Q2Z", False),  # gedit
        ("repo/manifests/bot.yaml.kate-swp", False),
        # names like them that are not
        ("repo/manifests/sedan.yaml", True),
        ("repo/manifests/v4913.yaml", True),
        ("repo/manifests/agents/bot/prompt_tmpl.txt", True),
    ],
)
def test_up_watches_sources_not_its_own_writes(tmp_path: Path, path: str, seen: bool) -> None:
    accept = watch_filter(tmp_path / "elsewhere" / "run")
    assert accept(watchfiles.Change.modified, str(tmp_path / path)) is seen


def test_an_editors_temporary_files_wake_no_one_and_the_save_does(tmp_path: Path) -> None:
    """A real watch (as `up` runs it): an editor's save writes temporary files first; the only
    change that comes through is the manifest's."""
    manifest = tmp_path / "bot.yaml"
    manifest.write_text("a: 1\n")
    stop = threading.Event()
    batches: list[set[tuple[watchfiles.Change, str]]] = []
    ready = threading.Event()

    def watch() -> None:
        ready.set()
        for changes in watchfiles.watch(
            tmp_path,
            watch_filter=watch_filter(tmp_path / ".agentctl"),
            stop_event=stop,
            step=50,
            rust_timeout=200,
            yield_on_timeout=True,
        ):
            if changes:
                batches.append(changes)
                stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)  # the watcher is set up
    for name in ("sedYqvEO4", "4913", ".bot.yaml.swp", "bot.yaml~", "#bot.yaml#", "x.tmp"):
        (tmp_path / name).write_text("scratch")
    time.sleep(0.5)
    for name in ("sedYqvEO4", "4913", ".bot.yaml.swp", "#bot.yaml#", "x.tmp"):
        (tmp_path / name).unlink()
    assert batches == [], "an editor's temporary files were reported as changes"
    manifest.write_text("a: 2\n")
    thread.join(10)
    assert [{Path(p).name for _, p in b} for b in batches] == [{"bot.yaml"}]
