"""The package layout must not shadow the standard library (DESIGN.md, "Layout")."""
import subprocess
import sys
import sysconfig


def test_tokenize_folder_has_no_init(root):
    assert (root / "tokenize").is_dir()
    assert not (root / "tokenize" / "__init__.py").exists()


def test_stdlib_tokenize_and_inspect_from_repo_root(root):
    code = "import tokenize, inspect, refinery.pipeline; print(tokenize.__file__); print(inspect.getsourcefile(tokenize.open))"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    stdlib = sysconfig.get_paths()["stdlib"]
    assert out[0].startswith(stdlib), out
    assert out[1].startswith(stdlib), out


def test_refinery_is_one_package(root):
    import refinery.pipeline
    import refinery.stages

    assert refinery.pipeline.__file__.startswith(str(root / "pipeline"))
    assert refinery.stages.__file__.startswith(str(root / "stages"))
