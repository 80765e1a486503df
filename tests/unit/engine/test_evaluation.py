"""spec.evaluation resolved by the loader: the dataset file's rows, the code scorers' files
(parsed, never run) and one digest; each mistake one error naming its file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.core.diagnostics import Diagnostic
from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec
from controller.engine import evaluation
from controller.engine.loader import load
from tests.support.manifests import GOOD, errors_of, write_repo

EVALUATION = """\
  evaluation:
    dataset: eval/questions.jsonl
    scorers:
      - builtin: PIIDetection
      - builtin: RegexMatch
        args: {pattern: "^Answer"}
      - code: eval/scorers.py:is_answer
    thresholds:
      - scorer: pii_detection
        min: 1.0
      - scorer: is_answer
        min: 0.9
        maxDrop: 0.05
"""
ROWS = [
    {"inputs": {"question": "What is 2+2?"}, "expectations": {"expected_response": "4"}},
    {"inputs": {"question": "Capital of France?"}, "tags": {"topic": "geo"}},
]
SCORERS = """\
from mlflow.genai.scorers import scorer

raise SystemExit("validating must never run a scorer file")


@scorer
def is_answer(outputs):
    return str(outputs).startswith("Answer")


async def polite(outputs):
    return "please" in str(outputs)
"""


def evaluated(root: Path, manifest: str = GOOD + EVALUATION, rows: str | None = None) -> Path:
    write_repo(root, manifest)
    (root / "eval").mkdir(exist_ok=True)
    text = rows if rows is not None else "".join(json.dumps(r) + "\n" for r in ROWS)
    (root / "eval" / "questions.jsonl").write_text(text)
    (root / "eval" / "scorers.py").write_text(SCORERS)
    return root


def resolved(root: Path) -> EvaluationSpec:
    (agent,) = load(root)[0].agents
    assert agent.evaluation is not None
    return agent.evaluation


def only_error(root: Path) -> Diagnostic:
    errors = errors_of(root)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def at(error: Diagnostic) -> tuple[str, int, str]:
    assert error.location is not None
    return Path(error.location.file).name, error.location.line, error.field


def test_a_good_evaluation_resolves_rows_scorers_and_digest(tmp_path: Path) -> None:
    spec = resolved(evaluated(tmp_path))
    assert spec.dataset == "eval/questions.jsonl" and spec.dataset_name is None
    assert [dict(r) for r in spec.rows] == ROWS
    assert spec.scorer_names == ("pii_detection", "regex_match", "is_answer")
    code = spec.scorers[2]
    assert (code.code, code.function) == ("eval/scorers.py", "is_answer")
    assert code.code_digest.startswith("sha256:") and len(code.code_digest) == 71
    assert spec.scorers[1] == ScorerSpec("regex_match", "RegexMatch", {"pattern": "^Answer"})
    assert [t.to_dict() for t in spec.thresholds] == [
        {"scorer": "pii_detection", "min": 1.0},
        {"scorer": "is_answer", "min": 0.9, "max_drop": 0.05},
    ]
    assert spec.digest.startswith("sha256:")
    assert spec.describe() == (
        "eval/questions.jsonl (2 rows, pii_detection, regex_match, is_answer)"
    )


def test_a_yaml_dataset_is_a_list_of_rows_and_gives_the_same_digest(tmp_path: Path) -> None:
    a = resolved(evaluated(tmp_path / "a"))
    yaml_rows = """\
# the same rows as the JSONL file, written by hand
- inputs:
    question: "What is 2+2?"
  expectations: {expected_response: "4"}
- tags: {topic: geo}
  inputs: {question: Capital of France?}
"""
    root = evaluated(tmp_path / "b", (GOOD + EVALUATION).replace(".jsonl", ".yaml"))
    (root / "eval" / "questions.yaml").write_text(yaml_rows)
    b = resolved(root)
    assert b.rows == a.rows and b.dataset == "eval/questions.yaml"
    assert b.digest == a.digest  # what is evaluated is the same


def test_an_mlflow_dataset_is_named_not_read(tmp_path: Path) -> None:
    manifest = (GOOD + EVALUATION).replace(
        "dataset: eval/questions.jsonl", "dataset: {mlflow: bot-questions}"
    )
    spec = resolved(evaluated(tmp_path, manifest))
    assert (spec.dataset_name, spec.rows, spec.size) == ("bot-questions", (), None)
    assert spec.dataset == "mlflow dataset bot-questions"


def test_the_digest_follows_what_is_evaluated_not_how_the_manifest_is_written(
    tmp_path: Path,
) -> None:
    base = resolved(evaluated(tmp_path / "base")).digest

    def digest_of(name: str, manifest: str = GOOD + EVALUATION, rows: str | None = None) -> str:
        return resolved(evaluated(tmp_path / name, manifest, rows)).digest

    reformatted = (
        (GOOD + EVALUATION)
        .replace(
            '        args: {pattern: "^Answer"}\n', "        args:\n          pattern: '^Answer'\n"
        )
        .replace("min: 1.0", "min: 1")
    )
    spaced = "\n".join(json.dumps(r, indent=None, separators=(", ", ": ")) for r in ROWS)
    assert digest_of("reformatted", reformatted, spaced + "\n\n") == base

    other_row = "".join(json.dumps(r) + "\n" for r in [ROWS[0], {"inputs": {"question": "?"}}])
    assert digest_of("row", rows=other_row) != base
    arg = (GOOD + EVALUATION).replace("^Answer", "^Reply")
    assert digest_of("arg", arg) != base
    threshold = (GOOD + EVALUATION).replace("min: 0.9", "min: 0.8")
    assert digest_of("threshold", threshold) != base
    root = evaluated(tmp_path / "code")
    (root / "eval" / "scorers.py").write_text(SCORERS + "\n# a comment is a change too\n")
    assert resolved(root).digest != base


def test_a_missing_dataset_names_the_field(tmp_path: Path) -> None:
    root = evaluated(tmp_path)
    (root / "eval" / "questions.jsonl").unlink()
    error = only_error(root)
    assert at(error) == ("bot.yaml", 18, "spec.evaluation.dataset")
    assert "dataset 'eval/questions.jsonl'" in error.message and "is not a file" in error.message


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        ('{"inputs": {"q": 1}}\n\n{"input": {"q": 1}}\n', 3, "unknown field 'input' in a row"),
        ('{"inputs": {"q": 1}}\n{"expectations": {}}\n', 2, "inputs is required"),
        ('{"inputs": "What?"}\n', 1, "inputs must be a mapping, not a string"),
        ('{"inputs": {}}\n', 1, "inputs is empty"),
        ('{"inputs": {"q": 1}, "tags": {"n": 1}}\n', 1, "a tag's value must be a string"),
        ('{"inputs": {"q": 1}, "expectations": [1]}\n', 1, "expectations must be a mapping"),
        ('["inputs"]\n', 1, "a row is a mapping with inputs"),
        ('{"inputs": {"q": NaN}}\n', 1, "NaN is not a JSON number"),
        ('{"inputs": {"q": 1, "q": 2}}\n', 1, "duplicate key 'q'"),
        ('{"inputs": {"q": 1}}\n{"inputs": \n', 2, "not a JSON object"),
        ("\n\n", 1, "no rows: the dataset is empty"),
    ],
)
def test_a_bad_jsonl_row_names_the_dataset_file_and_line(
    tmp_path: Path, rows: str, line: int, fragment: str
) -> None:
    error = only_error(evaluated(tmp_path, rows=rows))
    assert at(error) == ("questions.jsonl", line, "spec.evaluation.dataset")
    assert fragment in error.message


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        ("- inputs: {q: 1}\n- inputs:\n    q: 2\n    when: 2024-01-01\n", 4,
         "inputs.when: a date is not JSON data"),
        ("- inputs: {q: 1}\n- expected: {q: 2}\n  inputs: {q: 2}\n", 2,
         "unknown field 'expected' in a row; did you mean 'expectations'?"),
        ("rows:\n  - inputs: {q: 1}\n", 1, "a YAML dataset is a list of rows"),
        ("- inputs: {q: 1}\n-\tinputs: {}\n", 2, "invalid YAML"),
        ("- inputs: {q: 1, q: 2}\n", 1, "duplicate key 'q'"),
        ("# nothing yet\n", 1, "no rows"),
    ],
)  # fmt: skip
def test_a_bad_yaml_row_names_the_dataset_file_and_line(
    tmp_path: Path, rows: str, line: int, fragment: str
) -> None:
    root = evaluated(tmp_path, (GOOD + EVALUATION).replace(".jsonl", ".yaml"))
    (root / "eval" / "questions.yaml").write_text(rows)
    error = only_error(root)  # once, though the loader also reads it as a possible manifest
    assert at(error) == ("questions.yaml", line, "spec.evaluation.dataset")
    assert fragment in error.message


def test_too_many_rows_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "MAX_ROWS", 3)
    rows = "".join(json.dumps({"inputs": {"n": n}}) + "\n" for n in range(5))
    error = only_error(evaluated(tmp_path, rows=rows))
    assert at(error) == ("questions.jsonl", 4, "spec.evaluation.dataset")
    assert "more than 3 rows" in error.message


def test_many_bad_rows_are_summed_up(tmp_path: Path) -> None:
    rows = '{"input": {}}\n' * 15  # one problem a row: 'input' is taken to mean inputs
    errors = errors_of(evaluated(tmp_path, rows=rows))
    assert len(errors) == evaluation.MAX_ROW_PROBLEMS + 1
    assert [at(e)[1] for e in errors] == [*range(1, evaluation.MAX_ROW_PROBLEMS + 2)]
    assert errors[-1].message == "and 5 more problems in this dataset, from this line on"


@pytest.mark.parametrize(
    ("dataset", "fragment"),
    [
        ("../outside.jsonl", "outside the repository root"),
        ("eval/questions.csv", "a dataset is a .jsonl or .yaml/.yml file"),
        ("/etc/questions.jsonl", "is absolute"),
    ],
)
def test_a_dataset_path_that_cannot_be_read_is_refused(
    tmp_path: Path, dataset: str, fragment: str
) -> None:
    root = tmp_path / "repo"
    (tmp_path / "outside.jsonl").write_text('{"inputs": {"q": 1}}\n')
    error = only_error(
        evaluated(root, (GOOD + EVALUATION).replace("eval/questions.jsonl", dataset))
    )
    assert at(error) == ("bot.yaml", 18, "spec.evaluation.dataset")
    assert fragment in error.message


def test_a_dataset_is_size_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "MAX_DATASET_BYTES", 10)
    error = only_error(evaluated(tmp_path))
    assert at(error) == ("bot.yaml", 18, "spec.evaluation.dataset")
    assert "more than the" in error.message and "not read" in error.message


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("eval/scorers.py:is_answr",
         "defines no top-level function 'is_answr'; did you mean 'is_answer'? "
         "(it defines: is_answer, polite)"),
        ("eval/missing.py:is_answer", "scorer file 'eval/missing.py'"),
        ("../outside.py:is_answer", "outside the repository root"),
    ],
)  # fmt: skip
def test_a_code_scorer_that_cannot_be_found_names_its_field(
    tmp_path: Path, code: str, fragment: str
) -> None:
    (tmp_path / "outside.py").write_text("def is_answer(outputs):\n    return True\n")
    root = evaluated(
        tmp_path / "repo", (GOOD + EVALUATION).replace("eval/scorers.py:is_answer", code)
    )
    (error,) = [e for e in errors_of(root) if "scorers" in e.field]  # not the threshold's
    assert at(error) == ("bot.yaml", 23, "spec.evaluation.scorers[2].code")
    assert fragment in error.message


def test_a_code_scorer_that_does_not_parse_names_its_file_and_line(tmp_path: Path) -> None:
    root = evaluated(tmp_path)
    (root / "eval" / "scorers.py").write_text("def is_answer(outputs):\n    return (\n")
    error = only_error(root)
    assert at(error) == ("scorers.py", 2, "spec.evaluation.scorers[2].code")
    assert "not valid Python" in error.message


@pytest.mark.parametrize(
    ("source", "line", "fragment"),
    [
        ("import os\nfrom __future__ import annotations\n\ndef is_answer(outputs):\n"
         "    return True\n", 2, "from __future__ imports must occur at the beginning of the file"),
        ("def is_answer(outputs):\n    return True\n\nreturn None\n", 4,
         "'return' outside function"),
    ],
    ids=["future-import-below-a-statement", "return-outside-a-function"],
)  # fmt: skip
def test_a_code_scorer_that_parses_but_does_not_compile_names_its_file_and_line(
    tmp_path: Path, source: str, line: int, fragment: str
) -> None:
    root = evaluated(tmp_path)
    (root / "eval" / "scorers.py").write_text(source)
    error = only_error(root)
    assert at(error) == ("scorers.py", line, "spec.evaluation.scorers[2].code")
    assert error.message == f"not valid Python: {fragment}"


def test_an_async_or_decorated_function_is_a_scorer_and_a_nested_one_is_not(
    tmp_path: Path,
) -> None:
    manifest = (GOOD + EVALUATION).replace(
        "      - code: eval/scorers.py:is_answer\n",
        "      - code: eval/scorers.py:is_answer\n      - code: eval/scorers.py:polite\n",
    )
    spec = resolved(evaluated(tmp_path / "a", manifest))
    assert spec.scorer_names[-2:] == ("is_answer", "polite")
    assert spec.scorers[-1].code_digest == spec.scorers[-2].code_digest
    root = evaluated(tmp_path / "b", manifest.replace(":polite", ":inner"))
    (root / "eval" / "scorers.py").write_text(
        SCORERS + "\n\nclass Box:\n    def inner(self):\n        return 1\n"
    )
    assert "defines no top-level function 'inner'" in only_error(root).message


def test_every_problem_of_an_evaluation_in_one_run(tmp_path: Path) -> None:
    manifest = (
        (GOOD + EVALUATION).replace(":is_answer", ":nope").replace("PIIDetection", "PiiDetection")
    )
    errors = errors_of(evaluated(tmp_path, manifest, rows='{"inputs": {}}\n'))
    assert [(Path(e.location.file).name, e.field) for e in errors if e.location] == [
        ("bot.yaml", "spec.evaluation.scorers[0].builtin"),
        ("bot.yaml", "spec.evaluation.scorers[2].code"),
        ("questions.jsonl", "spec.evaluation.dataset"),
    ]
