"""The package layout: it must not shadow the standard library, and the packages import each
other only down the layers (docs/architecture.md, "Layers")."""

import ast
import subprocess
import sys
import sysconfig

# Modules every package may import; they import no other part of refinery.
CORE = ("pipeline.core", "pipeline.storage", "pipeline.resources", "pipeline.page", "pipeline.cluster")
# What each package may import besides itself and the core. The umbrella CLI (pipeline.cli) alone
# imports every package. classifiers reach the trainer's model for the InternLM2 perplexity scorer.
LAYERS = {
    "pipeline": set(),
    "stages": {"pipeline", "classifiers", "tokenize"},
    "classifiers": {"tokenize", "trainer"},
    "trainer": {"loaders", "tokenize"},
    "loaders": {"tokenize"},
    "tokenize": set(),
}


def test_tokenize_folder_has_no_init(root):
    assert (root / "tokenize").is_dir()
    assert not (root / "tokenize" / "__init__.py").exists()


def test_stdlib_tokenize_and_inspect_from_repo_root(root):
    code = (
        "import tokenize, inspect, refinery.pipeline; "
        "print(tokenize.__file__); print(inspect.getsourcefile(tokenize.open))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    stdlib = sysconfig.get_paths()["stdlib"]
    assert out[0].startswith(stdlib), out
    assert out[1].startswith(stdlib), out


def test_refinery_is_one_package(root):
    import refinery.pipeline
    import refinery.stages

    assert refinery.pipeline.__file__.startswith(str(root / "pipeline"))
    assert refinery.stages.__file__.startswith(str(root / "stages"))


def _imports(path) -> list[str]:
    """The refinery modules (or names inside them) a file imports, without the `refinery.`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name.removeprefix("refinery.") for name in found if name.startswith("refinery.")]


def _is_core(name: str) -> bool:
    return any(name == core or name.startswith(core + ".") for core in CORE)


def test_packages_import_only_down_the_layers(root):
    against = []
    for package, allowed in LAYERS.items():
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            if module == "pipeline.cli":
                continue
            for name in _imports(path):
                target = name.split(".")[0]
                if _is_core(module):
                    ok = _is_core(name)
                else:
                    ok = target == package or _is_core(name) or target in allowed
                if not ok:
                    against.append(f"{module} imports {name}")
    assert not against, "\n".join(against)
