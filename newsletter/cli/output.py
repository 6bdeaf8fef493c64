"""What commands print and write: counted nouns, and --output files whose missing folder or
full disk is a message, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 reader``, ``2,000 readers``: the count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar's ``update`` on a terminal; elsewhere (a pipe, a log file) it shows
    nothing, where click's bar would leave its label alone on a line."""
    if not sys.stdout.isatty():
        yield lambda done: None
        return
    with click.progressbar(length=length, label=label, show_pos=True, show_eta=True) as bar:
        yield bar.update


def _refusal(path: Path, exc: OSError) -> click.ClickException:
    folder = path.parent
    if not folder.is_dir():
        why = (
            f"the folder {folder} does not exist"
            if not folder.exists()
            else f"{folder} is no folder"
        )
    elif path.is_dir():
        why = "it is a folder"
    else:
        why = exc.strerror or str(exc)
    return click.ClickException(f"cannot write {path}: {why}")


@contextmanager
def text_file(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing UTF-8 text (newlines as written)."""
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise _refusal(path, exc) from None
    with handle:
        try:
            yield handle
        except OSError as exc:
            raise _refusal(path, exc) from None


def write_bytes(path: Path, data: bytes) -> int:
    """Write ``data`` to ``path``; returns the file's size."""
    try:
        path.write_bytes(data)
        return path.stat().st_size
    except OSError as exc:
        raise _refusal(path, exc) from None


def write_text(path: Path, text: str) -> int:
    """Write ``text`` as UTF-8 to ``path``; returns the file's size in bytes."""
    return write_bytes(path, text.encode("utf-8"))
