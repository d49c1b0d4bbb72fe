"""Hard-link identical files between venvs (the test command's torch 2.14.1 venvs).

PyPI's torch 2.14.1 is a CUDA build: each venv gets about 4 GB of CUDA libraries
(``nvidia/``, ``triton/``...) whose files are the same bytes for every Python version.
Linking them to one copy keeps the three extra venvs at about 1.5 GB each instead of
5.4 GB, so the test command fits on a smaller disk. Files are linked only when their
relative path, size and bytes are equal; a venv changed later gets its own copy again on
reinstall (pip replaces files, it does not write into them).

Usage: python scripts/dedupe_venvs.py VENV [VENV ...]
"""

from __future__ import annotations

import filecmp
import os
import sys
from pathlib import Path

MIN_BYTES = 1 << 20  # only big files are worth it


def site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    return found[0] if found else None


def main(venvs: list[str]) -> None:
    first: dict[str, Path] = {}
    saved = 0
    for venv in venvs:
        root = site_packages(Path(venv))
        if root is None:
            continue
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            stat = path.stat()
            if stat.st_size < MIN_BYTES:
                continue
            key = f"{path.relative_to(root)}:{stat.st_size}"
            original = first.setdefault(key, path)
            if original == path or os.path.samefile(original, path):
                continue
            if filecmp.cmp(original, path, shallow=False):
                tmp = path.with_name(path.name + ".dedupe-tmp")
                os.link(original, tmp)
                os.replace(tmp, path)
                saved += stat.st_size
    print(f"dedupe_venvs: {saved / 2**30:.1f} GiB shared by hard links")


if __name__ == "__main__":
    main(sys.argv[1:])
