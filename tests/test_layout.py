"""The layout's rules, checked on the source: the library never imports a command module, the app or eval's CLI;
no module imports another's private names; pyproject.toml declares what the requirements files install."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "dpr_rag.search",
    "dpr_rag.index",
    "dpr_rag.train",
    "dpr_rag.answer",
    "dpr_rag.train_rag",
    "dpr_rag.train_reranker",
    "dpr_rag.train_reader",
    "dpr_rag.generate_questions",
    "dpr_rag.prepare",
    "dpr_rag.cli_common",
}
CLI_MODULES = COMMANDS | {"eval.run", "eval.compare"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import in a file, relative ones resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names = [alias.name for alias in node.names]
            found.append((module, names))
            found += [(f"{module}.{n}", []) for n in names]  # `from . import x` imports the module x
    return found


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "metrics" not in p.parts)


LIBRARY = [p for p in sources("dpr_rag", "eval") if module_name(p) not in CLI_MODULES]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_the_library_imports_no_command_module(path):
    bad = {m for m, _ in imports(path) if m in CLI_MODULES}
    assert not bad, f"{module_name(path)} imports the CLI module(s) {sorted(bad)}: move what it needs into the library"


@pytest.mark.parametrize(
    "path", [p for p in LIBRARY if not module_name(p).startswith("dpr_rag.app")], ids=lambda p: module_name(p)
)
def test_the_library_does_not_import_the_app(path):
    assert not [m for m, _ in imports(path) if m == "dpr_rag.app" or m.startswith("dpr_rag.app.")]


@pytest.mark.parametrize("path", sources("dpr_rag", "eval"), ids=lambda p: module_name(p))
def test_no_module_imports_private_names_of_another(path):
    here = module_name(path)
    bad = [
        (m, n)
        for m, names in imports(path)
        for n in names
        if n.startswith("_") and not n.startswith("__") and m.split(".")[0] in ("dpr_rag", "eval") and m != here
    ]
    assert not bad, f"{here} imports private names {bad}"


def test_every_sub_package_says_what_lives_there():
    for init in (ROOT / "dpr_rag").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring saying what the sub-package holds"


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [re.sub(r"\s+#.*", "", s).strip() for s in lines if s.strip() and not s.startswith(("#", "-r"))]


def test_pyproject_declares_the_requirements_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == requirement_lines("requirements.txt")
    assert project["optional-dependencies"]["dev"] == requirement_lines("requirements-dev.txt")


MODEL_BUDGET = 50 * 2**20  # model files in the repository, all together


def test_model_files_fit_the_budget_are_safetensors_and_have_a_card():
    tracked = [p for p in ROOT.rglob("*") if p.is_file() and not {".venv", ".git", "runs", ".cache"} & set(p.parts)]
    weights = [p for p in tracked if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")]
    weights = [p for p in weights if "tests" not in p.relative_to(ROOT).parts]
    assert all(p.suffix == ".safetensors" for p in weights), [str(p) for p in weights if p.suffix != ".safetensors"]
    assert sum(p.stat().st_size for p in weights) <= MODEL_BUDGET
    for p in weights:  # a model card beside the weights, or one folder up (an adapter inside its RAG folder)
        cards = [p.parent / "README.md", p.parent.parent / "README.md"]
        assert any(c.exists() for c in cards), f"{p}: no model card (README.md) beside it"
