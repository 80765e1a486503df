"""Scorers built from their specs, in the child process that evaluates (never in agentctl's
own: a code scorer is the repository's code). Imports mlflow.

- a built-in (``RegexMatch``, ``PIIDetection``, ``ResponseLength``, or an LLM judge given its
  ``model``) is instantiated by class name from :mod:`mlflow.genai.scorers` with its arguments;
- a code scorer ``path.py:function`` is imported from the file under the root, after its bytes
  are checked against the digest the plan was made with (a file edited since is refused): a
  function decorated with ``@scorer`` is used as it is (renamed to the spec's name), a plain
  function is decorated here.

Every failure raises :class:`ScorerLoadError` naming the scorer and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import os
import runpy
from collections.abc import Sequence
from typing import Any

from controller.core.evaluation.spec import ScorerSpec

__all__ = ["ScorerLoadError", "build_scorer", "build_scorers"]

_loaded: dict[str, dict[str, Any]] = {}  # a code file's path -> its globals, run once


class ScorerLoadError(Exception):
    def __init__(self, spec: ScorerSpec, message: str) -> None:
        self.spec = spec
        super().__init__(f"scorer {spec.name} ({spec.label}): {message}")


def build_scorers(specs: Sequence[ScorerSpec], root: str) -> list[Any]:
    return [build_scorer(s, root) for s in specs]


def build_scorer(spec: ScorerSpec, root: str) -> Any:
    if spec.builtin is not None:
        return _builtin(spec)
    return _code(spec, root)


def _builtin(spec: ScorerSpec) -> Any:
    import mlflow.genai.scorers as scorers

    cls = getattr(scorers, spec.builtin or "", None)
    if cls is None or not isinstance(cls, type):
        raise ScorerLoadError(spec, f"mlflow.genai.scorers has no built-in {spec.builtin!r}")
    kwargs = dict(spec.args)
    kwargs["name"] = spec.name
    if spec.model is not None:
        kwargs["model"] = spec.model
    try:
        return cls(**kwargs)
    except Exception as exc:  # pydantic's ValidationError, TypeError: the arguments are wrong
        raise ScorerLoadError(spec, f"its arguments are refused: {exc}") from exc


def _code(spec: ScorerSpec, root: str) -> Any:
    from mlflow.genai.scorers import Scorer, scorer

    assert spec.code is not None and spec.function is not None
    path = os.path.join(root, spec.code)
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as exc:
        raise ScorerLoadError(spec, f"cannot read {spec.code}: {exc.strerror}") from exc
    if spec.code_digest and "sha256:" + hashlib.sha256(content).hexdigest() != spec.code_digest:
        raise ScorerLoadError(spec, f"{spec.code} changed since the plan was made")
    namespace = _loaded.get(path)
    if namespace is None:
        try:  # run as a file (not imported as a module: it is the repository's, not agentctl's)
            namespace = runpy.run_path(path, run_name=f"agentctl_scorers_{len(_loaded)}")
        except BaseException as exc:
            raise ScorerLoadError(
                spec, f"running {spec.code} failed: {type(exc).__name__}: {exc}"
            ) from exc
        _loaded[path] = namespace
    fn = namespace.get(spec.function)
    if fn is None:
        raise ScorerLoadError(spec, f"{spec.code} defines no {spec.function!r}")
    if isinstance(fn, Scorer):
        return fn if fn.name == spec.name else fn.model_copy(update={"name": spec.name})
    if not callable(fn):
        raise ScorerLoadError(spec, f"{spec.code}:{spec.function} is not a function")
    try:
        return scorer(fn, name=spec.name)
    except Exception as exc:
        raise ScorerLoadError(spec, f"it is not a usable scorer: {exc}") from exc
