"""An evaluation's figures and the verdict they earn. Pure.

A scorer's **figure** is the mean of its rows' values, where a pass (``True``, ``"yes"``) counts
1, a fail (``False``, ``"no"``) 0 and a number itself, and where a row the scorer could not score
(it raised, the agent gave no answer, the value is not one of these) counts 0: a scorer that
raises is a failed row, never a pass. For a pass/fail scorer the figure is its pass rate.
MLflow's own ``<scorer>/mean`` leaves errored rows out; agentctl's figure does not.

The **verdict** holds each threshold against its scorer's figure: ``min`` and ``max`` as
written, ``maxDrop`` against the champion's figure on the same dataset (skipped when there is
no champion: a first version). A scorer that failed on every row is a miss whatever its
thresholds, with its first error, so that a judge that cannot be reached is named as such.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.evaluation.spec import ThresholdSpec

__all__ = ["Miss", "ScorerFigures", "Verdict", "figures_of", "judge", "row_value"]


def row_value(value: Any) -> float | None:
    """A row's value as a number; None: not a usable value (counted as a failed row)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("yes", "true", "pass", "passed"):
            return 1.0
        if lowered in ("no", "false", "fail", "failed"):
            return 0.0
        try:
            number = float(lowered)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True, slots=True)
class ScorerFigures:
    scorer: str
    figure: float  # the mean, failed and errored rows counted 0
    rows: int
    errors: int = 0  # rows the scorer could not score
    first_error: str = ""

    @property
    def all_failed(self) -> bool:
        return self.rows > 0 and self.errors == self.rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"figure": self.figure, "rows": self.rows, "errors": self.errors}
        if self.first_error:
            out["first_error"] = self.first_error
        return out

    @classmethod
    def from_dict(cls, scorer: str, data: Mapping[str, Any]) -> ScorerFigures:
        return cls(
            scorer,
            float(data["figure"]),
            int(data["rows"]),
            int(data.get("errors", 0)),
            str(data.get("first_error", "")),
        )


def figures_of(
    scorer: str, values: Sequence[Any], errors: Sequence[str | None] | None = None
) -> ScorerFigures:
    """One scorer's figures from its rows' values (and error messages, row by row)."""
    errors = errors if errors is not None else [None] * len(values)
    total, failed, first = 0.0, 0, ""
    for value, error in zip(values, errors, strict=True):
        number = None if error else row_value(value)
        if number is None:
            failed += 1
            if not first:
                first = error or f"no usable value ({value!r})"
            continue
        total += number
    rows = len(values)
    return ScorerFigures(scorer, total / rows if rows else 0.0, rows, failed, first[:500])


@dataclass(frozen=True, slots=True)
class Miss:
    """A threshold a figure does not reach."""

    scorer: str
    figure: float | None
    bound: str  # "min 0.95", "maxDrop 0.05 from the champion's 0.97", "failed on every row"

    @property
    def message(self) -> str:
        if self.figure is None:
            return f"{self.scorer} {self.bound}"
        return f"{self.scorer} {self.figure:.3g} misses {self.bound}"


@dataclass(frozen=True, slots=True)
class Verdict:
    misses: tuple[Miss, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.misses

    @property
    def word(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def reason(self) -> str:
        return "; ".join(m.message for m in self.misses)


def judge(
    figures: Mapping[str, ScorerFigures],
    thresholds: Iterable[ThresholdSpec],
    champion: Mapping[str, float] | None = None,
) -> Verdict:
    """Hold each threshold against the figures (and the champion's, for ``maxDrop``)."""
    misses: list[Miss] = []
    for name, f in figures.items():
        if f.all_failed:
            misses.append(Miss(name, None, f"failed on every row ({f.first_error})"))
    failed_whole = {m.scorer for m in misses}
    for t in thresholds:
        if t.scorer in failed_whole:
            continue
        found = figures.get(t.scorer)
        if found is None:
            misses.append(Miss(t.scorer, None, "has no figure (the scorer did not run)"))
            continue
        f = found
        unscored = (
            f" ({f.errors} of {f.rows} rows could not be scored: {f.first_error})"
            if f.errors
            else ""
        )
        if t.min is not None and f.figure < t.min:
            misses.append(Miss(t.scorer, f.figure, f"min {t.min:g}{unscored}"))
        if t.max is not None and (f.figure > t.max or f.errors):
            # A row counted 0 would help a figure under a max: an unscored row fails it.
            misses.append(Miss(t.scorer, f.figure, f"max {t.max:g}{unscored}"))
        if t.max_drop is not None and champion is not None and t.scorer in champion:
            best = champion[t.scorer]
            if best - f.figure > t.max_drop + 1e-12:
                misses.append(
                    Miss(
                        t.scorer,
                        f.figure,
                        f"maxDrop {t.max_drop:g} from the champion's {best:.3g}",
                    )
                )
    return Verdict(tuple(misses))
