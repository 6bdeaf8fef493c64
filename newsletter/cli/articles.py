"""``newsletter articles``: fetch feeds, add and import articles, list them."""

from __future__ import annotations

import click
from flask.cli import AppGroup

articles = AppGroup("articles", help="Fetch, add, import and list the site's articles.")
