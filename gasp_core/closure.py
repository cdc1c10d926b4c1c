"""The ``gasp_core`` source files a stage script can execute: the transitive closure of its imports.

DVC reruns a stage when one of its dependencies changes, so each stage in ``dvc.yaml`` depends on its script and on
the ``gasp_core`` files this closure reaches (a subpackage folder where the closure takes all of it), not on the
whole package: an edit to a task head reruns only the task stages, and one in ``sim/`` reruns none of the pipeline.
``tests/test_configs.py`` fails when ``dvc.yaml`` misses a file of a closure, and pre-training's resume fingerprint
hashes the same closure.

Every ``import`` statement counts, at module level or inside a function (lazy imports run too), as does every
parent package's ``__init__.py`` (Python runs it first). ``python -m gasp_core.closure`` prints each stage's
minimal cover, the list that goes under the stage's ``deps``; ``--write dvc.yaml`` puts it there.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gasp_core"


def _module_file(module: str, root: Path) -> Path | None:
    """The source file of a ``gasp_core`` module or package, or None when there is none."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _package_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    else:
        parts = parts[:-1]
    return ".".join(parts)


def _is_lazy_hook(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef) and node.name == "__getattr__"


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _absolute(node: ast.ImportFrom, path: Path, root: Path) -> str | None:
    if not node.level:
        return node.module or ""
    if not path.resolve().is_relative_to((root / PACKAGE).resolve()):
        return None
    base = _package_of(path, root).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def _parse(path: Path, root: Path) -> tuple[set[str], set[tuple[str, str]], set[str], set[str]]:
    """(modules imported anywhere except in a module-level ``__getattr__``, (module, name) pairs the file takes from
    a module, its top-level names, the modules its module-level ``__getattr__`` imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hooks = [n for n in tree.body if _is_lazy_hook(n)]
    in_hook = {id(n) for h in hooks for n in ast.walk(h)}
    modules: set[str] = set()
    names: set[tuple[str, str]] = set()
    lazy: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        target = lazy if id(node) in in_hook else modules
        if isinstance(node, ast.Import):
            for a in node.names:
                target.add(a.name)
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, path, root)
            if module is None:
                continue
            target.add(module)
            for a in node.names:
                target.add(f"{module}.{a.name}")
                names.add((module, a.name))
    for node in ast.walk(tree):  # attribute chains on imported modules: gasp_core.load_pretrained
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in aliases:
                dotted = [aliases[inner.id]] + chain[::-1]
                for i in range(1, len(dotted)):
                    names.add((".".join(dotted[:i]), dotted[i]))
    keep = lambda ms: {m for m in ms if m == PACKAGE or m.startswith(PACKAGE + ".")}  # noqa: E731
    names = {(m, n) for m, n in names if m == PACKAGE or m.startswith(PACKAGE + ".")}
    return keep(modules), names, _top_level_names(tree), keep(lazy)


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def _closure(script: Path, root: Path) -> tuple[Path, ...]:
    """Files reached from ``script``. A package's lazy attributes (PEP 562 ``__getattr__``) count only for a file
    that takes a name from it that the package neither defines nor holds as a submodule."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        modules, names, _, _ = _parse(path, root)
        wanted = set(modules)
        for module, name in names:
            f = _module_file(module, root)
            if f is None or f.name != "__init__.py" or _module_file(f"{module}.{name}", root) is not None:
                continue
            _, _, defined, lazy = _parse(f, root)
            if name not in defined:
                wanted |= lazy
        for module in wanted:
            for name in _with_parents(module):
                f = _module_file(name, root)
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return tuple(sorted(seen))


def import_closure(script: str | Path, root: Path = ROOT) -> list[Path]:
    """The ``gasp_core`` files that running ``script`` can import, sorted, as paths relative to ``root``."""
    script = (root / script).resolve() if not Path(script).is_absolute() else Path(script).resolve()
    return [p.relative_to(root.resolve()) for p in _closure(script, root.resolve())]


def minimal_cover(files: list[Path], root: Path = ROOT) -> list[str]:
    """The shortest list of DVC dependency paths covering ``files``: a subpackage folder where every ``.py`` file in
    it (recursively) is needed, the files themselves otherwise."""
    needed = {Path(f) for f in files}
    out: list[str] = []

    def visit(folder: Path) -> None:
        all_py = {p.relative_to(root) for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts}
        if folder != Path(PACKAGE) and all_py and all_py <= needed:
            out.append(folder.as_posix())
            return
        for child in sorted((root / folder).iterdir()):
            rel = child.relative_to(root)
            if child.is_dir() and child.name != "__pycache__":
                visit(rel)
            elif rel in needed:
                out.append(rel.as_posix())

    visit(Path(PACKAGE))
    return out


def digest(files: list[Path], root: Path = ROOT) -> str:
    """sha1 over the files' relative paths and bytes: changes exactly when one of them does."""
    h = hashlib.sha1()
    for rel in sorted(Path(f) for f in files):
        h.update(rel.as_posix().encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def rewrite_dvc_yaml(path: Path, root: Path = ROOT) -> bool:
    """Replace each stage's ``gasp_core`` deps in ``path`` by the minimal cover of its script's closure, keeping every
    other line (comments included); returns whether the file changed."""
    import re

    lines = path.read_text().split("\n")
    out: list[str] = []
    script = None
    for line in lines:
        found = re.search(r"python (stages/\w+\.py)", line)
        if found:
            script = found.group(1)
        if re.match(r"\s*- gasp_core(/|$)", line):
            if out and out[-1].endswith("\x00"):  # the cover is written once, where the first gasp_core dep stood
                continue
            if script is None:
                raise ValueError(f"{path}: a gasp_core dependency before any stage command")
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(f"{indent}- {dep}" for dep in minimal_cover(import_closure(script, root), root))
            out[-1] += "\x00"
            continue
        if out and out[-1].endswith("\x00"):
            out[-1] = out[-1][:-1]
        out.append(line)
    out = [x.rstrip("\x00") for x in out]
    text = "\n".join(out)
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="DVC_YAML",
        help="rewrite the gasp_core deps of every stage in this dvc.yaml instead of printing them",
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        print(f"{args.write}: {'updated' if rewrite_dvc_yaml(args.write) else 'already up to date'}")
        return
    for script in sorted((ROOT / "stages").glob("*.py")):
        print(f"{script.relative_to(ROOT)}:")
        for dep in minimal_cover(import_closure(script)):
            print(f"  - {dep}")


if __name__ == "__main__":
    main()
