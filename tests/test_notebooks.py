"""Every notebook runs headlessly (nbclient) against the running service; an error
in any cell fails the suite."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import issue_key

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Executed copies, outputs included: the documentation site renders these (docs/site_hooks.py).
EXECUTED = ROOT / "build" / "notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, service: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METOSIM_URL", str(service["client"].base_url))
    monkeypatch.setenv("METOSIM_API_KEY", issue_key(service, f"notebook-{path.stem}"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("METOSIM_QUICK", "1")  # notebooks with long loops run them short
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    EXECUTED.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, EXECUTED / path.name)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # plots were drawn
    if path.stem == "field_slicer":
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
