"""An agent's evaluation as the loader resolved it: the rows, the scorers, the thresholds and
one digest over all of them. Pure data: the loader reads the files, this only holds them.

The digest is what a recorded verdict is valid for: a version whose recorded evaluation digest
is this one is not evaluated again; a change to the dataset's rows, a scorer (its arguments, its
code file's bytes) or a threshold makes a new digest, and each version is evaluated afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUILTINS",
    "BUILTIN_ARGS",
    "JUDGES",
    "EvaluationSpec",
    "ScorerSpec",
    "ThresholdSpec",
    "builtin_name",
    "canonical",
    "evaluation_digest",
]

#: MLflow 3.17.2's built-in scorers that need no LLM (``mlflow/genai/scorers/builtin_scorers.py``)
#: -> the name their results go by.
BUILTINS: Mapping[str, str] = {
    "RegexMatch": "regex_match",
    "PIIDetection": "pii_detection",
    "ResponseLength": "response_length",
}
#: The arguments each of those takes (its pydantic fields in MLflow 3.17.2, but ``name``, which
#: is the scorer's own ``name:``) -> the values allowed, None: any value (checked by MLflow).
BUILTIN_ARGS: Mapping[str, Mapping[str, tuple[str, ...] | None]] = {
    "RegexMatch": {
        "pattern": None,
        "match_type": ("search", "fullmatch"),
        "case_insensitive": None,
    },
    "PIIDetection": {"pii_types": ("email", "phone", "ssn", "credit_card", "ip_address")},
    "ResponseLength": {"min_length": None, "max_length": None, "unit": ("chars", "words")},
}
#: The built-in LLM judges (each takes ``model``) -> the name their results go by.
JUDGES: Mapping[str, str] = {
    "Guidelines": "guidelines",
    "ExpectationsGuidelines": "expectations_guidelines",
    "Correctness": "correctness",
    "RelevanceToQuery": "relevance_to_query",
    "Safety": "safety",
    "Fluency": "fluency",
    "Equivalence": "equivalence",
    "Completeness": "completeness",
    "Summarization": "summarization",
    "RetrievalRelevance": "retrieval_relevance",
    "RetrievalSufficiency": "retrieval_sufficiency",
    "RetrievalGroundedness": "retrieval_groundedness",
    "ToolCallCorrectness": "tool_call_correctness",
    "ToolCallEfficiency": "tool_call_efficiency",
}


def builtin_name(builtin: str) -> str | None:
    """The name a built-in's results go by; None: not a built-in agentctl knows."""
    return BUILTINS.get(builtin) or JUDGES.get(builtin)


def canonical(value: Any) -> str:
    """The one JSON text of a value (sorted keys, no spaces): what digests are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ScorerSpec:
    """One scorer, resolved: a built-in (``builtin`` + ``args``, a judge's ``model``) or a code
    scorer (``code``: the file relative to the root, ``function``)."""

    name: str
    builtin: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    code: str | None = None  # relative to the root
    function: str | None = None
    code_digest: str = ""  # sha256 of the code file's bytes

    @property
    def label(self) -> str:
        if self.code is not None:
            return f"{self.code}:{self.function}"
        return self.builtin or self.name

    @property
    def judge(self) -> bool:
        return self.builtin is not None and self.builtin in JUDGES

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.builtin is not None:
            out["builtin"] = self.builtin
            out["args"] = dict(self.args)
            if self.model is not None:
                out["model"] = self.model
        else:
            out["code"] = self.code
            out["function"] = self.function
            out["code_digest"] = self.code_digest
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScorerSpec:
        return cls(
            name=str(data["name"]),
            builtin=data.get("builtin"),
            args=dict(data.get("args") or {}),
            model=data.get("model"),
            code=data.get("code"),
            function=data.get("function"),
            code_digest=str(data.get("code_digest", "")),
        )


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    scorer: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scorer": self.scorer}
        for key, value in (("min", self.min), ("max", self.max), ("max_drop", self.max_drop)):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdSpec:
        return cls(str(data["scorer"]), data.get("min"), data.get("max"), data.get("max_drop"))


@dataclass(frozen=True, slots=True)
class EvaluationSpec:
    """``spec.evaluation`` resolved: ``rows`` from the dataset file (empty for an MLflow
    dataset, which the evaluating child reads by ``dataset_name``)."""

    dataset: str  # for people: the file as the repository names it, or "mlflow dataset <name>"
    scorers: tuple[ScorerSpec, ...]
    thresholds: tuple[ThresholdSpec, ...] = ()
    rows: tuple[Mapping[str, Any], ...] = ()
    dataset_name: str | None = None  # an MLflow evaluation dataset
    digest: str = ""

    @property
    def size(self) -> int | None:
        """How many rows; None: an MLflow dataset (known when it is read)."""
        return None if self.dataset_name is not None else len(self.rows)

    @property
    def scorer_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scorers)

    @property
    def dataset_file(self) -> str | None:
        """The dataset file, relative to the root; None: an MLflow evaluation dataset."""
        return None if self.dataset_name is not None else self.dataset

    @property
    def code_files(self) -> tuple[str, ...]:
        """The code scorers' files, relative to the root, each once."""
        return tuple(dict.fromkeys(s.code for s in self.scorers if s.code is not None))

    def describe(self) -> str:
        """``eval/questions.jsonl (12 rows, pii_detection, answers_expected)``."""
        rows = f"{self.size} rows" if self.size is not None else "rows read from MLflow"
        return f"{self.dataset} ({rows}, {', '.join(self.scorer_names)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dataset_name": self.dataset_name,
            "rows": [dict(r) for r in self.rows],
            "scorers": [s.to_dict() for s in self.scorers],
            "thresholds": [t.to_dict() for t in self.thresholds],
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationSpec:
        return cls(
            dataset=str(data["dataset"]),
            scorers=tuple(ScorerSpec.from_dict(s) for s in data["scorers"]),
            thresholds=tuple(ThresholdSpec.from_dict(t) for t in data.get("thresholds", ())),
            rows=tuple(data.get("rows", ())),
            dataset_name=data.get("dataset_name"),
            digest=str(data.get("digest", "")),
        )


def evaluation_digest(
    rows: tuple[Mapping[str, Any], ...],
    dataset_name: str | None,
    scorers: tuple[ScorerSpec, ...],
    thresholds: tuple[ThresholdSpec, ...],
) -> str:
    """``sha256:<hex>`` over everything an evaluation's verdict depends on (but the version)."""
    body = {
        "rows": [dict(r) for r in rows],
        "dataset_name": dataset_name,
        "scorers": [s.to_dict() for s in scorers],
        "thresholds": [t.to_dict() for t in thresholds],
    }
    return "sha256:" + hashlib.sha256(canonical(body).encode()).hexdigest()
