"""The manifest schema of ``spec.evaluation``: the dataset, the scorers, the thresholds (see
:mod:`controller.core.manifest.schema`, which the Agent's spec takes them from). Pure data."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from controller.core.manifest.base import _Model

__all__ = ["CodeRef", "DatasetRef", "Evaluation", "ScorerName", "ScorerRef", "Threshold"]

#: What a scorer's results go by: the name MLflow logs its metric as (``<name>/mean``).
ScorerName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=100)
]

#: ``path/to/file.py:function``: a code scorer in the repository.
CodeRef = Annotated[str, StringConstraints(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")]


class DatasetRef(_Model):
    """Where the evaluation rows come from: a file in the repository, or an MLflow evaluation
    dataset by name."""

    file: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="A file in the repository (relative to the manifest) of at most 10000 rows, "
        "each {inputs: {...}, expectations: {...}, tags: {...}} (inputs required: the agent's "
        "arguments): .jsonl, one JSON object a line, or .yaml/.yml, one list of rows; "
        "'dataset: path' is a shorthand.",
    )
    mlflow: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="The name of an MLflow evaluation dataset (mlflow.genai.datasets); the name "
        "must be unique in the tracking server.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"file": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        if (self.file is None) == (self.mlflow is None):
            raise ValueError("give exactly one of 'file' or 'mlflow'")
        return self

    @property
    def label(self) -> str:
        return self.file if self.file is not None else f"mlflow dataset {self.mlflow}"


class ScorerRef(_Model):
    """A scorer: an MLflow built-in by class name (with its arguments; an LLM judge also takes
    ``model``), or a code scorer ``path.py:function`` from the repository."""

    builtin: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z0-9]*$")] | None = Field(
        default=None,
        description="An MLflow built-in scorer (mlflow.genai.scorers): RegexMatch, PIIDetection, "
        "ResponseLength need no LLM; judges such as Guidelines, Correctness, Safety take model.",
    )
    code: CodeRef | None = Field(
        default=None,
        description="A code scorer: 'path.py:function' (relative to the manifest, inside the "
        "repository), a top-level def decorated with @mlflow.genai.scorers.scorer, or a plain "
        "function of (inputs, outputs, expectations) returning bool, a number, 'yes'/'no' or a "
        "Feedback. Validating only parses the file; it runs when a version is evaluated.",
    )
    name: ScorerName | None = Field(
        default=None,
        description="The name its results go by; default: the built-in's own (regex_match, "
        "pii_detection...) or the function's.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the built-in (e.g. {pattern: '^Answer'}).",
    )
    model: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*:/.+$")] | None = Field(
        default=None,
        description="An LLM judge's model URI, e.g. openai:/gpt-4o-mini (its key is read from "
        "the environment, e.g. OPENAI_API_KEY); required for a judge (agentctl picks none), "
        "refused for a scorer that runs no LLM.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ScorerRef:
        if (self.builtin is None) == (self.code is None):
            raise ValueError("give exactly one of 'builtin' or 'code'")
        return self


class Threshold(_Model):
    """What a scorer's figure must reach: the mean of its rows, a pass counting 1, a fail, an
    error or a missing answer 0 (for a pass/fail scorer, its pass rate)."""

    scorer: ScorerName = Field(description="A scorer listed in spec.evaluation.scorers.")
    min: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        default=None, description="The least figure that passes, e.g. 0.95."
    )
    max: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        default=None, description="The most figure that passes (a numeric scorer)."
    )
    max_drop: Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)] | None = Field(
        default=None,
        description="How far under the champion's figure on the same dataset it may fall "
        "(the champion: the version the candidate takes the place of).",
    )

    @model_validator(mode="after")
    def _something(self) -> Threshold:
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError("give at least one of 'min', 'max' or 'maxDrop'")
        return self


class Evaluation(_Model):
    """A quality gate: each version is evaluated on the dataset with the scorers
    (mlflow.genai.evaluate) before an alias or traffic moves to it; a version under a threshold
    gets neither."""

    dataset: DatasetRef = Field(description="The evaluation rows: a file, or {mlflow: name}.")
    scorers: list[ScorerRef] = Field(min_length=1, max_length=50, description="The scorers.")
    thresholds: list[Threshold] = Field(
        default_factory=list, description="What each scorer's figure must reach."
    )
