"""Signatures cover the engine code that shapes outputs."""
from pathlib import Path

from buildsys import signature
from buildsys.classes.base import BuildClass

PACKAGE = Path(signature.__file__).resolve().parent


def test_every_module_is_classified():
    """A new module must be declared output-shaping or not: none is forgotten."""
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    declared = set(signature.OUTPUT_SHAPING) | set(signature.NOT_OUTPUT_SHAPING)
    skipped = signature.NOT_OUTPUT_SHAPING_DIRS + (signature.PER_CLASS_DIR,)
    undeclared = {m for m in modules - declared if not m.startswith(skipped)}
    assert not undeclared, f"classify these in signature.py: {sorted(undeclared)}"
    assert not (set(signature.OUTPUT_SHAPING) & set(signature.NOT_OUTPUT_SHAPING))
    assert all((PACKAGE / m).is_file() for m in signature.OUTPUT_SHAPING)


def test_engine_version_follows_the_code(monkeypatch, tmp_path):
    before = signature.engine_version()
    fake = tmp_path / "buildsys"
    for rel in signature.OUTPUT_SHAPING:
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_bytes((PACKAGE / rel).read_bytes())
    monkeypatch.setattr(signature, "_PACKAGE_DIR", fake)
    monkeypatch.setattr(signature, "_engine_version", None)
    assert signature.engine_version() == before            # same code, same version, in another place
    (fake / "image/gpt.py").write_bytes((fake / "image/gpt.py").read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(signature, "_engine_version", None)
    assert signature.engine_version() != before


def test_class_version_covers_helpers_in_the_class_module():
    import buildsys.classes.kernel as kernel

    version = BuildClass.registry["kernel"].version()
    assert len(version) == 16
    # The module-level repro environment is part of what the version hashes.
    assert "KBUILD_BUILD_TIMESTAMP" in Path(kernel.__file__).read_text()
    assert version != BuildClass.registry["make"].version()
