"""``newsletter digest``: preview, send and follow editions."""

from __future__ import annotations

import click
from flask.cli import AppGroup

digest = AppGroup("digest", help="Preview, send and follow digest editions.")
