"""Writing the example notebooks from cells kept in reviewable Python scripts."""

from __future__ import annotations

import pathlib
from typing import Any, List

import nbformat
from nbformat.v4 import new_notebook

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def write_notebook(cells: List[Any], name: str) -> pathlib.Path:
    """Write ``examples/<name>`` with a Python 3 kernelspec; returns its path.

    Cell ids are numbered, so regenerating an unchanged notebook changes nothing."""
    for number, cell in enumerate(cells):
        cell["id"] = f"{pathlib.Path(name).stem}-{number}"
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    path = EXAMPLES / name
    nbformat.write(notebook, path)
    print(f"wrote {path}")
    return path
