"""An evaluation as recorded on the model version: registry tags under ``agentctl.io/eval-``.
The one reader and writer of them. Pure.

- ``eval-digest``: the evaluation digest (:mod:`controller.core.evaluation.spec`) it was made for;
- ``eval-verdict``: ``passed`` or ``failed``;
- ``eval-run``: the MLflow run of the evaluation (its traces, assessments and metrics);
- ``eval-figures``: each scorer's figure, compact JSON;
- ``eval-reason``: the thresholds missed, for people (empty when passed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.evaluation.spec import canonical

__all__ = [
    "EVAL_DIGEST_TAG",
    "EVAL_FIGURES_TAG",
    "EVAL_REASON_TAG",
    "EVAL_RUN_TAG",
    "EVAL_TAGS",
    "EVAL_VERDICT_TAG",
    "Recorded",
    "read",
]

EVAL_DIGEST_TAG = "agentctl.io/eval-digest"
EVAL_VERDICT_TAG = "agentctl.io/eval-verdict"
EVAL_RUN_TAG = "agentctl.io/eval-run"
EVAL_FIGURES_TAG = "agentctl.io/eval-figures"
EVAL_REASON_TAG = "agentctl.io/eval-reason"
EVAL_TAGS = (EVAL_DIGEST_TAG, EVAL_VERDICT_TAG, EVAL_RUN_TAG, EVAL_FIGURES_TAG, EVAL_REASON_TAG)
_REASON_LIMIT = 4000  # an MLflow tag value holds 5000


@dataclass(frozen=True, slots=True)
class Recorded:
    digest: str
    passed: bool
    run_id: str
    figures: Mapping[str, float]
    reason: str = ""

    def tags(self) -> dict[str, str]:
        """The tags that record it, in the order they are written (the verdict last, an earlier
        verdict deleted before the first: a crash between two writes leaves no verdict, and the
        next apply evaluates again)."""
        return {
            EVAL_DIGEST_TAG: self.digest,
            EVAL_RUN_TAG: self.run_id,
            EVAL_FIGURES_TAG: canonical({k: round(v, 6) for k, v in self.figures.items()}),
            EVAL_REASON_TAG: self.reason[:_REASON_LIMIT],
            EVAL_VERDICT_TAG: "passed" if self.passed else "failed",
        }


def read(tags: Mapping[str, str]) -> Recorded | None:
    """The evaluation recorded in a version's tags; None if there is none (or it is unreadable:
    a version whose record cannot be read is evaluated again)."""
    verdict = tags.get(EVAL_VERDICT_TAG)
    digest = tags.get(EVAL_DIGEST_TAG)
    if verdict not in ("passed", "failed") or not digest:
        return None
    try:
        raw = json.loads(tags.get(EVAL_FIGURES_TAG, "{}"))
        figures = {str(k): float(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return None
    return Recorded(
        digest, verdict == "passed", tags.get(EVAL_RUN_TAG, ""), figures,
        tags.get(EVAL_REASON_TAG, ""),
    )  # fmt: skip
