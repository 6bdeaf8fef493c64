"""Absolute links for mail, built from NEWSLETTER_BASE_URL rather than the request."""

from __future__ import annotations

from typing import Any

from flask import current_app


def external_url(endpoint: str, **values: Any) -> str:
    """The public URL of ``endpoint``; works in workers, where there is no request."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return f"{current_app.config['BASE_URL']}{path}"
