"""The checks of spec.evaluation that need no file (core.manifest.evaluation): built-ins and their
arguments, judges and models, unique names, thresholds on listed scorers, once, reachable."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.manifest.evaluation import check_evaluation, not_json
from controller.core.manifest.problem import field_name
from controller.core.manifest.schema import AgentManifest


def problems(scorers: list[Any], thresholds: list[Any] | None = None) -> list[tuple[str, str]]:
    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "agentctl.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "bot"},
            "spec": {
                "registeredModel": "bot",
                "evaluation": {
                    "dataset": "q.jsonl",
                    "scorers": scorers,
                    "thresholds": thresholds or [],
                },
            },
        }
    )
    return [(field_name(p.path), p.message) for p in check_evaluation(manifest.spec)]


def test_good_scorers_and_thresholds_have_no_problem() -> None:
    assert (
        problems(
            [
                {"builtin": "PIIDetection", "args": {"pii_types": ["email"]}},
                {"builtin": "RegexMatch", "args": {"pattern": "^A", "match_type": "fullmatch"}},
                {"builtin": "ResponseLength", "args": {"max_length": 500}},
                {"builtin": "Safety", "model": "openai:/gpt-4o-mini"},
                {"code": "s.py:is_answer"},
                {"code": "s.py:is_answer", "name": "again"},
            ],
            [{"scorer": "is_answer", "min": 0.9, "max": 1}, {"scorer": "safety", "maxDrop": 0.1}],
        )
        == []
    )


@pytest.mark.parametrize(
    ("scorer", "field", "fragment"),
    [
        ({"builtin": "PiiDetection"}, "scorers[0].builtin",
         "unknown built-in scorer 'PiiDetection'; did you mean 'PIIDetection'?"),
        ({"builtin": "RegexMatch", "args": {"patern": "^A"}}, "scorers[0].args.patern",
         "RegexMatch takes no argument 'patern'; did you mean 'pattern'?"),
        ({"builtin": "RegexMatch", "args": {"pattern": "(", "match_type": "search"}},
         "scorers[0].args.pattern", "not a regular expression"),
        ({"builtin": "RegexMatch", "args": {"pattern": "a", "match_type": "full"}},
         "scorers[0].args.match_type", "match_type must be one of search, fullmatch"),
        ({"builtin": "PIIDetection", "args": {"pii_types": ["mail"]}},
         "scorers[0].args.pii_types", "pii_types must be a list of one of email"),
        ({"builtin": "ResponseLength"}, "scorers[0].args", "needs args.min_length or"),
        ({"builtin": "PIIDetection", "model": "openai:/gpt-4o"}, "scorers[0].model",
         "PIIDetection runs no LLM"),
        ({"builtin": "Correctness"}, "scorers[0].builtin",
         "Correctness is an LLM judge: give its `model`"),
        ({"builtin": "Guidelines", "model": "openai:/x", "args": {"name": "g"}},
         "scorers[0].args.name", "give name as the scorer's `name:`"),
        ({"code": "s.py:f", "args": {"a": 1}}, "scorers[0].args", "only a built-in scorer takes args"),
        ({"code": "s.py:f", "model": "openai:/x"}, "scorers[0].model", "only a built-in"),
        ({"builtin": "Guidelines", "model": "openai:/x", "args": {"guidelines": {1: "a"}}},
         "scorers[0].args.guidelines", "key 1 is not a string"),
    ],
)  # fmt: skip
def test_a_scorer_mistake_names_its_field(
    scorer: dict[str, Any], field: str, fragment: str
) -> None:
    (found,) = problems([scorer])
    assert found[0] == f"spec.evaluation.{field}" and fragment in found[1], found


def test_two_scorers_of_one_name_are_an_error() -> None:
    assert problems([{"code": "a.py:score"}, {"code": "b.py:score"}]) == [
        ("spec.evaluation.scorers[1].code",
         "scorer name 'score' is also scorers[0]'s; give one of them a `name:` of its own"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("thresholds", "field", "fragment"),
    [
        ([{"scorer": "pii_detecton", "min": 1}], "thresholds[0].scorer",
         "scorer 'pii_detecton' is not listed in spec.evaluation.scorers; did you mean "
         "'pii_detection'? (listed: is_answer, pii_detection)"),
        ([{"scorer": "is_answer", "min": 0.9}, {"scorer": "is_answer", "maxDrop": 0.1}],
         "thresholds[1].scorer", "a second threshold for scorer 'is_answer' (first at thresholds[0])"),
        ([{"scorer": "is_answer", "min": 0.9, "max": 0.5}], "thresholds[0].max",
         "max 0.5 is under min 0.9: no figure could pass"),
    ],
)  # fmt: skip
def test_a_threshold_mistake_names_its_field(
    thresholds: list[Any], field: str, fragment: str
) -> None:
    (found,) = problems([{"builtin": "PIIDetection"}, {"code": "s.py:is_answer"}], thresholds)
    assert found[0] == f"spec.evaluation.{field}" and fragment in found[1], found


def test_a_threshold_is_not_blamed_for_an_unknown_built_in() -> None:
    found = problems([{"builtin": "PiiDetection"}], [{"scorer": "pii_detection", "min": 1}])
    assert [f for f, _ in found] == ["spec.evaluation.scorers[0].builtin"]


def test_not_json_finds_what_json_cannot_hold() -> None:
    assert not_json({"a": [1, 2.5, None, True, "x", {"b": {}}]}) is None
    assert not_json({"a": [1, float("nan")]}) == (("a", 1), "nan is not a JSON number")
    assert not_json({"a": {("t",): 1}}) == (("a",), "key ('t',) is not a string")
