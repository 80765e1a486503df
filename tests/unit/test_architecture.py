"""The shape of the package: the pure core does no I/O, dependencies point down, and the
commands that touch no server do not import mlflow."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "controller"

# The pure core: these may import only the standard library's pure parts, pydantic, packaging
# and each other.
PURE = {
    "checks", "changeset", "desired", "diagnostics", "digest", "errors", "observed", "plan",
    "planner", "render", "schema", "schema_json", "scope", "annotations", "serving_plan", "routing",
    "kube_objects", "preview", "drift", "backoff", "webhook", "rollout", "analysis",
}  # fmt: skip
ALLOWED_THIRD_PARTY = {"pydantic", "packaging", "typing_extensions", "tenacity"}
FORBIDDEN_STDLIB = {
    "os", "io", "socket", "subprocess", "time", "datetime", "random", "pathlib", "shutil",
    "threading", "asyncio", "urllib", "http", "requests", "tempfile", "glob",
}  # fmt: skip
# Layers, lowest first: a module may import only from its own layer or below.
LAYER = {
    **dict.fromkeys(PURE, 0),
    "ports": 1,
    "retry": 1,
    "metrics": 1,
    "loader": 2,
    "gitdiff": 2,
    "adapters": 2,
    "apply": 3,
    "progressive": 3,
    "reconcile": 4,
    "loop": 4,
    "cli": 5,
    "manager": 5,
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py")


def short(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_modules_do_no_io(name: str) -> None:
    path = PKG / f"{name}.py"
    text = path.read_text()
    assert "Pure" in (ast.get_docstring(ast.parse(text)) or ""), f"{name} must say it is pure"
    for imp in imports_of(path):
        top = imp.split(".")[0]
        if top == "controller":
            assert imp.split(".")[1] in PURE, f"{name} imports {imp}, which is not pure"
        elif top not in sys.stdlib_module_names:
            assert top in ALLOWED_THIRD_PARTY, f"{name} imports {imp}"
        else:
            assert top not in FORBIDDEN_STDLIB, f"{name} imports {imp}"
    assert "open(" not in text, f"{name} opens files"


@pytest.mark.parametrize("path", module_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_dependencies_point_down(path: Path) -> None:
    me = short(path)
    assert me in LAYER, f"{me} is not placed in a layer in this test"
    for imp in imports_of(path):
        parts = imp.split(".")
        if parts[0] != "controller" or len(parts) < 2:
            continue
        other = parts[1]
        assert LAYER[other] <= LAYER[me], (
            f"{me} (layer {LAYER[me]}) imports {imp} (layer {LAYER[other]})"
        )


@pytest.mark.parametrize("argv", [["validate", "manifests"], ["schema"], ["--help"]])
def test_light_commands_do_not_import_mlflow(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from controller.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('MLFLOW' if 'mlflow' in sys.modules else 'CLEAN')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, check=False
    )
    assert out.stdout.strip().splitlines()[-1] == "CLEAN", out.stdout + out.stderr


def test_the_controller_against_a_tracking_server_does_not_import_mlflow() -> None:
    """The controller's process stays lean: the REST registry, the loop and its endpoints, with
    no mlflow (and so no pandas, numpy, pyarrow) in it; models are logged in a child."""
    code = (
        "import sys\n"
        "from controller import manager, loop\n"
        "from controller.adapters.mlflow_rest import RestRegistry\n"
        "from controller.adapters.kubernetes import KubernetesServing\n"
        "from controller.adapters.endpoints import Endpoints\n"
        "from controller.adapters.lease import LeaderElector\n"
        "reg = RestRegistry('http://127.0.0.1:1')\n"
        "loop.Controller(lambda: None, reg)\n"
        "heavy = {'mlflow', 'pandas', 'numpy', 'pyarrow'} & set(sys.modules)\n"
        "print('HEAVY ' + ','.join(sorted(heavy)) if heavy else 'CLEAN')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, check=False
    )
    assert out.stdout.strip().splitlines()[-1] == "CLEAN", out.stdout + out.stderr


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_plan_and_apply_against_a_tracking_server_do_not_import_mlflow(command: str) -> None:
    """Against a tracking server the CLI speaks REST: no mlflow import (seconds, and 100+ MiB),
    here up to the error of a server that does not answer."""
    argv = [command, "manifests", "--tracking-uri", "http://127.0.0.1:1", "--target", "registry"]
    code = (
        "import sys\n"
        "from controller.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('MLFLOW' if 'mlflow' in sys.modules else 'CLEAN')\n"
    )
    env = {**os.environ, "AGENTCTL_RETRY_ATTEMPTS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, check=False,
        env=env,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["EXIT 1", "CLEAN"], out.stdout + out.stderr
    assert "did not answer" in out.stderr, out.stderr


def test_the_rest_adapter_serves_plain_servers_and_leaves_the_rest_to_the_mlflow_client() -> None:
    from controller.adapters.mlflow_rest import RestRegistry, usable

    assert usable("http://127.0.0.1:5000", {}) and usable("https://mlflow.example", {})
    assert not usable("sqlite:///mlflow.db", {}) and not usable("databricks", {})
    assert not usable("https://m", {"MLFLOW_TRACKING_AUTH": "my_plugin"})
    assert not usable("https://m", {"MLFLOW_TRACKING_AWS_SIGV4": "true"})
    assert not usable("https://m", {"AGENTCTL_REGISTRY_CLIENT": "mlflow"})
    # Credentials as the MLflow client picks them: username and password, else the token.
    both = RestRegistry("https://m", env={"MLFLOW_TRACKING_USERNAME": "u",
                                          "MLFLOW_TRACKING_PASSWORD": "p",
                                          "MLFLOW_TRACKING_TOKEN": "t"})  # fmt: skip
    assert both._http.auth == ("u", "p") and "Authorization" not in both._http.headers
    token = RestRegistry("https://m", env={"MLFLOW_TRACKING_USERNAME": "u",
                                           "MLFLOW_TRACKING_TOKEN": "t"})  # fmt: skip
    assert token._http.auth is None and token._http.headers["Authorization"] == "Bearer t"
    assert (
        RestRegistry("https://m", env={"MLFLOW_TRACKING_INSECURE_TLS": "1"})._http.verify is False
    )
