"""Execute a notebook and save the figures of the cells tagged ``{"figure": NAME}`` in
their metadata as ``docs/NAME.png``: the README's figures are the notebooks' own
output.

    python docs/notebook_figures.py notebooks/waveguides.ipynb

Runs against ``METOSIM_URL``/``METOSIM_API_KEY`` when set, else the embedded local
service (as the notebooks do).
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    notebook = nbformat.read(args.notebook, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(args.notebook.parent)}}).execute()
    for cell in notebook.cells:
        name = cell.get("metadata", {}).get("figure")
        if cell.cell_type != "code" or not name:
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                raise SystemExit(f"cell for {name} failed: {output.ename}: {output.evalue}")
            png = output.get("data", {}).get("image/png")
            if png:
                (args.out / f"{name}.png").write_bytes(base64.b64decode(png))
                print(f"wrote {args.out / f'{name}.png'}")
        for output in cell.outputs:
            if output.output_type == "stream":
                print(f"  {name}: {output.text.strip()}")


if __name__ == "__main__":
    main()
