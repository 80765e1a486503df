"""Prompt manifests and templates for tests: a text prompt, a chat prompt, an agent bound to a
prompt, and a repository holding them as the loader expects."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.manifests import GOOD, write_repo

#: A text prompt with two variables, kept at 'current' and at version 3.
TEXT_PROMPT = """\
apiVersion: agentctl.io/v1alpha1
kind: Prompt
metadata:
  name: support-system
spec:
  template: support-system.txt
  variables: [customer, question]
  versions: [current, 3]
  aliases:
    production: current
    stable: 3
  tags: {team: support}
"""

TEXT_TEMPLATE = "You help {{ customer }}.\nAnswer: {{question}}\n"

#: A chat prompt (format from the .yaml suffix).
CHAT_PROMPT = """\
apiVersion: agentctl.io/v1alpha1
kind: Prompt
metadata:
  name: triage
spec:
  name: support-triage
  template: triage.yaml
  variables: [question]
  responseFormat: {type: object, properties: {label: {type: string}}}
  modelConfig: {provider: openai, modelName: gpt-4o-mini, temperature: 0.2}
  aliases:
    production: current
"""

CHAT_TEMPLATE = """\
- role: system
  content: You sort support questions.
- role: user
  content: |
    Sort this: {{ question }}
"""

#: The valid agent of tests.support.manifests, bound to the text prompt.
BOUND_AGENT = GOOD.replace("spec:\n", "spec:\n  prompts:\n    system: support-system@production\n")


def write_prompt_repo(
    root: Path,
    prompt: str = TEXT_PROMPT,
    template: str = TEXT_TEMPLATE,
    template_name: str = "support-system.txt",
    agent: str = GOOD,
) -> Path:
    """A repository with the agent (bot.yaml) and one prompt (prompts/<name>.yaml beside its
    template)."""
    write_repo(root, agent)
    (root / "prompts").mkdir(exist_ok=True)
    (root / "prompts" / "prompt.yaml").write_text(textwrap.dedent(prompt))
    (root / "prompts" / template_name).write_text(template)
    return root
