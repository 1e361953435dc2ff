"""The layering of DESIGN.md, kept true: a module imports only from its own layer or below.

ops → assign, losses → models (and the model config) → data, eval, io → engine, infer, export →
commands / cli. The one sanctioned reach upwards is the Detector's conveniences
(`model.train/val/predict/export`), which import lazily inside the method; imports under
`if TYPE_CHECKING:` (annotations only, never executed) are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "detforge"
LAYERS = {  # top-level module or package -> layer
    "errors": 0, "fsutil": 0, "limits": 0, "registry": 0, "device": 0, "runs": 0, "progress": 0, "ops": 0,
    "assign": 1, "losses": 1,
    "models": 2, "config": 2,
    "data": 3, "eval": 3, "io": 3,
    "engine": 4, "infer": 4, "export": 4,
    "commands": 5, "cli": 5, "__init__": 5, "__main__": 5,
}
LAZY_UPWARD = {"models/detector.py"}  # Detector.train/val/predict/export


def top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "detforge":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports(tree: ast.AST):
    skipped = type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "detforge":  # `from detforge import x`: x is a subpackage or the package API
                for alias in node.names:
                    if alias.name != "__version__":  # a string, not a reach into the API
                        yield node, f"detforge.{alias.name}" if alias.name in LAYERS else "detforge"
            else:
                yield node, node.module


def test_every_module_has_a_layer():
    unknown = sorted({p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")} - set(LAYERS))
    assert not unknown, f"add these to LAYERS in {__file__}: {unknown}"


def test_no_module_imports_from_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        own = LAYERS[relative.split("/")[0].removesuffix(".py")]
        for node, module in imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = top(module)
            if target is None or LAYERS.get(target, 5) <= own:
                continue
            if relative in LAZY_UPWARD and node.col_offset > 0:
                continue
            wrong.append(f"{relative}:{node.lineno} imports {module}")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)
