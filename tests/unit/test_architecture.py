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

# A pure module may import only the standard library's pure parts, these, and core.
ALLOWED_THIRD_PARTY = {
    "pydantic",
    "packaging",
    "typing_extensions",
    "tenacity",
}  # its waits are pure
FORBIDDEN_STDLIB = {
    "os", "io", "socket", "subprocess", "time", "datetime", "random", "pathlib", "shutil",
    "threading", "asyncio", "urllib", "http", "requests", "tempfile", "glob", "logging",
}  # fmt: skip


def modules_of(pkg: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package at ``pkg``."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = modules_of(PKG)


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


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports too); ``from
    pkg import mod`` counts as importing ``pkg.mod`` when that is a module (``known``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
            found |= {f"{node.module}.{a.name}" for a in node.names} & known
    return found


def dynamic_imports(path: Path) -> list[str]:
    """Imports the rule cannot see: importlib, ``__import__``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name) and node.id == "__import__":
            out.append("__import__")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            out += [n for n in names if n.split(".")[0] == "importlib"]
    return out


def internal_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    out = set()
    for imp in imports_of(path, set(modules)):
        if imp.split(".")[0] != "controller":
            continue
        parts = imp.split(".")  # the longest known module the name starts with
        while ".".join(parts) not in modules:
            parts = parts[:-1]
        out.add(".".join(parts))
    return out


def violations(pkg: Path) -> list[str]:
    """Everything in the package at ``pkg`` that breaks the rule of controller/__init__.py:
    an import upward or between adapter packages, a relative or dynamic import (outside the
    package face, which loads its exports lazily), an import circle."""
    modules = modules_of(pkg)
    found = []
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if any(i.startswith(".") for i in imports_of(path, set(modules))):
            found.append(f"{name}: a relative import (write controller.… in full)")
        if layer(name) != "face" and dynamic_imports(path):
            found.append(f"{name}: a dynamic import ({', '.join(dynamic_imports(path))})")
        graph[name] = internal_imports(path, modules) - {name}
        for other in sorted(graph[name]):
            me, them = layer(name), layer(other)
            if me != them and not may_import(me, them):
                found.append(f"{name} ({me}) imports {other} ({them})")
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append("import circle: " + " -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def purity_problems(name: str, path: Path) -> list[str]:
    """Why a module that must be pure is not: I/O imports, files opened, no word that it is."""
    text = path.read_text()
    out = []
    if path.name != "__init__.py" and "Pure" not in (ast.get_docstring(ast.parse(text)) or ""):
        out.append(f"{name} must say it is pure")
    for imp in imports_of(path, set(MODULES)):
        top = imp.split(".")[0]
        if top == "controller":
            if layer(imp) != "core":
                out.append(f"{name} imports {imp}, which is not in core")
        elif top not in sys.stdlib_module_names:
            if top not in ALLOWED_THIRD_PARTY:
                out.append(f"{name} imports {imp}")
        elif top in FORBIDDEN_STDLIB or top == "importlib":
            out.append(f"{name} imports {imp}")
    if "open(" in text or "__import__" in text:
        out.append(f"{name} opens files or imports dynamically")
    return out


CORE = sorted(m for m in MODULES if layer(m) == "core")
#: Modules outside core that say they are pure are held to it too.
SAY_PURE = sorted(
    m
    for m, p in MODULES.items()
    if layer(m) != "core" and "Pure" in (ast.get_docstring(ast.parse(p.read_text())) or "")
)


@pytest.mark.parametrize("name", CORE + SAY_PURE)
def test_pure_modules_do_no_io(name: str) -> None:
    assert purity_problems(name, MODULES[name]) == []


def test_modules_outside_core_that_are_pure_say_so() -> None:
    assert {"controller.engine.drift", "controller.engine.backoff"} <= set(SAY_PURE)
    assert {"controller.adapters.http.webhook", "controller.adapters.local.routing"} <= set(
        SAY_PURE
    )


def test_dependencies_point_down_and_nothing_goes_round_in_circles() -> None:
    for name in MODULES:
        layer(name)  # every module is in a layer
    assert violations(PKG) == []


def test_the_rule_is_checked_against_a_deliberately_broken_tree(tmp_path: Path) -> None:
    """The scanner itself finds an upward import, an import between adapter packages, a
    dynamic and a relative import, and a circle; and a core module's I/O."""
    pkg = tmp_path / "controller"
    files = {
        "__init__.py": "import importlib\n",
        "core/__init__.py": "",
        "core/bad.py": '"""Pure."""\nfrom controller.engine import loop\nimport os\n',
        "core/sneaky.py": '"""Pure."""\nimport importlib\nimportlib.import_module("x")\n',
        "engine/__init__.py": "",
        "engine/loop.py": "def f():\n    from controller.adapters.mlflow import rest\n",
        "engine/a.py": "from controller.engine import b\n",
        "engine/b.py": "from controller.engine import a\n",
        "adapters/__init__.py": "",
        "adapters/mlflow/__init__.py": "",
        "adapters/mlflow/rest.py": "from . import other\n",
        "adapters/kubernetes/__init__.py": "",
        "adapters/kubernetes/events.py": "from controller.adapters.mlflow.rest import X\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    found = "\n".join(violations(pkg))
    for expected in (
        "controller.core.bad (core) imports controller.engine.loop (engine)",
        "controller.engine.loop (engine) imports controller.adapters.mlflow.rest (adapters.mlflow)",
        "controller.adapters.kubernetes.events (adapters.kubernetes) imports "
        "controller.adapters.mlflow.rest (adapters.mlflow)",
        "controller.core.sneaky: a dynamic import (importlib)",
        "controller.adapters.mlflow.rest: a relative import",
        "import circle: controller.engine.a -> controller.engine.b -> controller.engine.a",
    ):
        assert expected in found, found
    assert "controller:" not in found  # the package face may load its exports lazily
    problems = purity_problems("controller.core.bad", pkg / "core/bad.py")
    assert "controller.core.bad imports os" in problems


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
        rel = path.relative_to(TESTS)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"tests/{rel}: relative import"
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for module in names:
                if module.split(".")[0] == "tests":
                    assert module.startswith("tests.support"), f"tests/{rel} imports {module}"


def test_unit_tests_mirror_the_package() -> None:
    """tests/unit/<folder> tests controller/<folder>: the same tree."""
    unit = TESTS / "unit"
    for folder in sorted(p for p in unit.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(unit)
        assert (PKG / rel).is_dir(), f"tests/unit/{rel} has no controller/{rel} to test"
        assert (folder / "__init__.py").exists(), f"tests/unit/{rel} needs an __init__.py"
