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

# core may import only the standard library's pure parts, these, and core.
ALLOWED_THIRD_PARTY = {"pydantic", "packaging", "typing_extensions"}
FORBIDDEN_STDLIB = {
    "os", "io", "socket", "subprocess", "time", "datetime", "random", "pathlib", "shutil",
    "threading", "asyncio", "urllib", "http", "requests", "tempfile", "glob", "logging",
}  # fmt: skip


def module_files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in module_files()}


def layer(module: str) -> str:
    """The layer a module belongs to, read from its folder: core, ports, engine, app, the
    package face, or adapters.<system> (each adapter package a layer of its own)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "face"
    if parts[1] == "adapters":
        return "adapters" if len(parts) == 2 else f"adapters.{parts[2]}"
    if parts[1] in ("core", "engine", "app", "ports"):
        return parts[1]
    if parts[1] == "__main__":
        return "app"
    raise AssertionError(f"{module} is in no layer: put it in core/, engine/, adapters/ or app/")


def may_import(importer: str, imported: str) -> bool:
    """The dependency rule of controller/__init__.py, between two different layers."""
    below = {
        "face": {"core", "ports", "engine", "app"},
        "app": {"face", "core", "ports", "engine", "adapters"},
        "engine": {"core", "ports"},
        "ports": {"core"},
        "core": set(),
    }
    if importer.startswith("adapters."):
        return imported in ("core", "ports")
    allowed = below.get(importer, set())
    return imported in allowed or (imported.startswith("adapters.") and "adapters" in allowed)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports too); ``from
    pkg import mod`` counts as importing ``pkg.mod`` when that is a module."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (write controller.… in full)"
            assert node.module is not None
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
    return found


def internal_imports(path: Path) -> set[str]:
    out = set()
    for imp in imports_of(path):
        if imp.split(".")[0] != "controller":
            continue
        # the longest known module the name starts with
        parts = imp.split(".")
        while ".".join(parts) not in MODULES:
            parts = parts[:-1]
        out.add(".".join(parts))
    return out


CORE = sorted(m for m in MODULES if layer(m) == "core")


@pytest.mark.parametrize("name", CORE)
def test_core_modules_do_no_io(name: str) -> None:
    path = MODULES[name]
    text = path.read_text()
    if path.name != "__init__.py":
        assert "Pure" in (ast.get_docstring(ast.parse(text)) or ""), f"{name} must say it is pure"
    for imp in imports_of(path):
        top = imp.split(".")[0]
        if top == "controller":
            assert layer(imp) == "core", f"{name} imports {imp}, which is not in core"
        elif top not in sys.stdlib_module_names:
            assert top in ALLOWED_THIRD_PARTY, f"{name} imports {imp}"
        else:
            assert top not in FORBIDDEN_STDLIB, f"{name} imports {imp}"
    assert "open(" not in text, f"{name} opens files"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_dependencies_point_down(name: str) -> None:
    me = layer(name)
    for other in internal_imports(MODULES[name]):
        them = layer(other)
        assert me == them or may_import(me, them), (
            f"{name} ({me}) imports {other} ({them}): see the rule in controller/__init__.py"
        )


def test_no_import_circles() -> None:
    graph = {m: internal_imports(p) - {m} for m, p in MODULES.items()}
    # a package's __init__ is imported with each of its modules: not an edge of its own
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_rule_is_checked_against_a_deliberate_violation(tmp_path: Path) -> None:
    """The check above is not vacuous: an upward import and an import between adapter
    packages are both refused."""
    assert not may_import("core", "engine")
    assert not may_import("engine", "adapters.mlflow")
    assert not may_import("adapters.kubernetes", "adapters.mlflow")
    assert not may_import("adapters.local", "engine")
    assert not may_import("ports", "engine")
    assert may_import("app", "adapters.local") and may_import("engine", "core")


def test_the_package_face_states_the_rule_and_loads_lazily() -> None:
    import controller

    doc = controller.__doc__ or ""
    for word in ("core", "ports", "adapters", "engine", "app", "circle"):
        assert word in doc
    for name in controller.__all__:
        assert getattr(controller, name) is not None
    code = "import sys, controller\nprint(sorted(m for m in sys.modules if m.startswith('controller.')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("argv", [["validate", "manifests"], ["schema"], ["--help"]])
def test_light_commands_do_not_import_mlflow(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from controller.app.cli import app\n"
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
        "from controller.app import manager\n"
        "from controller.engine import loop\n"
        "from controller.adapters.mlflow.rest import RestRegistry\n"
        "from controller.adapters.kubernetes.serving import KubernetesServing\n"
        "from controller.adapters.http.endpoints import Endpoints\n"
        "from controller.adapters.kubernetes.lease import LeaderElector\n"
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
        "from controller.app.cli import app\n"
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
    from controller.adapters.mlflow.rest import RestRegistry, usable

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


def test_the_public_surface_is_the_export_table() -> None:
    import controller

    assert sorted(controller.__all__) == sorted([*controller._EXPORTS, "__version__"])


TESTS = PKG.parent / "tests"


def test_tests_share_pieces_through_tests_support_only() -> None:
    """Fakes, clocks, manifests and helpers live in tests/support; no test module imports
    another test module (or its conftest)."""
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                rel = path.relative_to(TESTS)
                assert node.level == 0, f"tests/{rel}: relative import"
                module = node.module or ""
                if module.startswith("tests"):
                    assert module.startswith("tests.support"), f"tests/{rel} imports {module}"


def test_unit_tests_mirror_the_package() -> None:
    """tests/unit/<folder> tests controller/<folder>: the same tree."""
    unit = TESTS / "unit"
    for folder in sorted(p for p in unit.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(unit)
        assert (PKG / rel).is_dir(), f"tests/unit/{rel} has no controller/{rel} to test"
        assert (folder / "__init__.py").exists(), f"tests/unit/{rel} needs an __init__.py"
