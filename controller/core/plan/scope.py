"""Which agents a change touches, for ``plan --changed-since``. Pure data: no I/O.

An agent is in scope when its manifest or any of its source files changed (in an environment
after another, the files its versions are built from first; or the Environment's manifest
changed), when it serves and the
ServingDefaults file changed, when its evaluation's dataset file or a code scorer's file changed
(what a version is evaluated on), when a prompt it binds is in scope, or when its source digest
(bound to its prompts) is not registered (the registry is behind the manifests, whatever the
diff says). A prompt is in scope when its manifest or its template file changed, or when its
template's content is not registered.
"""

from __future__ import annotations

from collections.abc import Set

from controller.core.evaluation.spec import EvaluationSpec
from controller.core.manifest.desired import Desired
from controller.core.prompt.resolve import version_with_content
from controller.core.state.observed import RegistrySnapshot

__all__ = ["select"]


def select(desired: Desired, changed: Set[str], observed: RegistrySnapshot) -> dict[str, str]:
    """Agent (or Prompt document) name -> why it is in scope."""
    scope: dict[str, str] = {}
    prompts: dict[str, str] = {}  # registered prompt name -> why its document is in scope
    for prompt in desired.prompts:
        why = ""
        if prompt.manifest_ref in changed:
            why = f"{prompt.manifest_ref} changed"
        elif prompt.template_ref in changed:
            why = f"{prompt.template_ref} changed"
        elif version_with_content(observed.prompts.get(prompt.prompt_name),
                                  prompt.content.digest) is None:  # fmt: skip
            why = "its template is not registered yet"
        if why:
            scope[prompt.name] = why
            prompts[prompt.prompt_name] = why
    env = next((e for e in desired.environments if e.name == desired.environment), None)
    for agent in desired.agents:
        if agent.manifest_ref in changed:
            scope[agent.name] = f"{agent.manifest_ref} changed"
            continue
        if env is not None and env.manifest_ref in changed:
            scope[agent.name] = f"{env.manifest_ref} changed"
            continue
        later = [r for r in agent.upstream_refs if r in changed]
        if later:
            scope[agent.name] = (f"{', '.join(later)} changed (its versions come into "
                                 f"{desired.environment} by promotion)")  # fmt: skip
            continue
        if desired.defaults_ref in changed and agent.manifest.spec.serving is not None:
            scope[agent.name] = f"{desired.defaults_ref} changed"
            continue
        refs = {r: None for s in agent.sources if s.commit is None for r in s.refs}
        touched = [r for r in refs if r in changed]
        if touched:
            scope[agent.name] = f"{', '.join(touched)} changed"
            continue
        why = evaluation_changed(agent.evaluation, changed)
        if why:
            scope[agent.name] = why
            continue
        bound = [b for b in agent.bindings if b.prompt in prompts]
        if bound:
            b = bound[0]
            scope[agent.name] = f"it binds prompt {b.prompt} as {b.key}: {prompts[b.prompt]}"
            continue
        model = observed.models.get(agent.model_name)
        if any(model is None or model.version_with_digest(s.digest) is None for s in agent.sources):
            scope[agent.name] = "its source digest is not registered yet"
    return scope


def evaluation_changed(evaluation: EvaluationSpec | None, changed: Set[str]) -> str:
    """Why the evaluation's files make the agent in scope (``its evaluation dataset
    eval/questions.jsonl changed``); "" if none of them changed."""
    if evaluation is None:
        return ""
    parts = []
    if evaluation.dataset_file is not None and evaluation.dataset_file in changed:
        parts.append(f"its evaluation dataset {evaluation.dataset_file}")
    scorers = [f for f in evaluation.code_files if f in changed]
    if scorers:
        parts.append(f"its code scorer file{'s' if len(scorers) > 1 else ''} {', '.join(scorers)}")
    return f"{' and '.join(parts)} changed" if parts else ""
