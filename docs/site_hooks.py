"""mkdocs hooks for the documentation site (``mkdocs.yml``: ``hooks``).

The tutorials are the repository's notebooks, copied into ``docs/tutorials/``
(ignored by git) before the files are collected, so mkdocs-jupyter renders them: the
copies the test suite executed (``build/notebooks/``, written by
``tests/test_notebooks.py``, outputs and figures included) when present, else the
clean sources in ``notebooks/``. The benchmark
results page is ``benchmarks/RESULTS.md``. The API reference lists every public name
of ``metosim`` (its ``__all__``), so a new export appears without editing a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "build" / "notebooks"


def api_page() -> str:
    import metosim

    lines = [
        "# API reference",
        "",
        "Every public name of `metosim` (its `__all__`), from the docstrings. Lengths are in",
        "µm, times in s, frequencies in Hz unless a docstring says otherwise.",
        "",
    ]
    for name in metosim.__all__:
        if name.startswith("_") or name == "__version__":
            continue
        lines += [f"::: metosim.{name}", ""]
    return "\n".join(lines)


def on_config(config: Any) -> Any:
    target = Path(config["docs_dir"]) / "tutorials"
    target.mkdir(exist_ok=True)
    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        executed = EXECUTED / source.name
        content = (executed if executed.exists() else source).read_bytes()
        copy = target / source.name
        if not copy.exists() or copy.read_bytes() != content:  # `mkdocs serve` watches this folder
            copy.write_bytes(content)
    return config


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "results.md", content=(ROOT / "benchmarks" / "RESULTS.md").read_text()))
    files.append(File.generated(config, "api.md", content=api_page()))
    return files
