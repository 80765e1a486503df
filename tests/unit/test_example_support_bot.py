"""The example support bot (manifests/agents/support_bot/agent.py) finds its greeting, its system
prompt, where each way of running it puts it: the prompt version agentctl pinned into the model
config, else the template file beside the code (a run from the working tree), else the config's
``greeting`` (a version logged without the binding). Run from copies: no server."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import EXAMPLES

BOT = EXAMPLES / "agents" / "support_bot"
_names = itertools.count()


def _copy(tmp_path: Path, *, template: bool = True) -> Path:
    dest = tmp_path / "support_bot"
    dest.mkdir()
    for name in ("agent.py", "config.yaml"):
        shutil.copy(BOT / name, dest / name)
    if template:
        shutil.copytree(BOT / "prompts", dest / "prompts")
    return dest


def _bot(folder: Path) -> Any:
    """Run the agent's module as MLflow runs a model from code, and return its agent."""
    spec = importlib.util.spec_from_file_location(
        f"support_bot_{next(_names)}", folder / "agent.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SupportBot()


def test_the_example_template_is_todays_greeting() -> None:
    """The example's prompt says what the bot said before prompts existed (the README's quick
    start, the evaluation dataset and its scorers rely on that answer)."""
    assert (BOT / "prompts" / "system.txt").read_text().strip() == "Hi, this is the support bot."
    assert "support-system@production" in (EXAMPLES / "support-bot.yaml").read_text()


def test_without_pinned_prompts_it_reads_the_template_beside_it(tmp_path: Path) -> None:
    """No ``prompts`` in the config: the working tree's template is the greeting, not the
    config's ``greeting``, so an edited prompt is what a run from the working tree answers."""
    folder = _copy(tmp_path)
    (folder / "prompts" / "system.txt").write_text("Hello from the working tree.\n")
    bot = _bot(folder)
    assert bot.answer("how do I get a refund?") == (
        "Hello from the working tree. Refunds are issued within 5 business days."
    )


def test_without_the_template_it_falls_back_to_the_configs_greeting(tmp_path: Path) -> None:
    """A version logged without the binding has neither: the config's greeting answers."""
    folder = _copy(tmp_path, template=False)
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("Hi, this is the support bot.", "Old hello."))
    assert _bot(folder).answer("opening hours?") == (
        "Old hello. We are open 9:00-17:00 UTC, Monday to Friday."
    )


def test_a_pinned_prompt_wins_over_the_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prompts.system`` in the config (as agentctl logs it) is loaded with
    ``mlflow.genai.load_prompt`` and formatted; the file beside the code is not read."""
    import mlflow
    from mlflow.entities.model_registry import PromptVersion

    asked: list[str] = []

    def load_prompt(uri: str) -> PromptVersion:
        asked.append(uri)
        return PromptVersion("support-system", 7, "Pinned hello.\n")

    monkeypatch.setattr(mlflow.genai, "load_prompt", load_prompt)
    folder = _copy(tmp_path)
    config = folder / "config.yaml"
    config.write_text(config.read_text() + "prompts:\n  system: prompts:/support-system/7\n")
    assert _bot(folder).answer("password?") == (
        "Pinned hello. Reset your password from the sign-in page."
    )
    assert asked and set(asked) == {"prompts:/support-system/7"}  # once per SupportBot()
