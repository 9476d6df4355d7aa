"""``pgqueue web``: a server-rendered console for queues, dead letters, the gate and the workers.

Starlette and Jinja2 render every page on the server; htmx (vendored in ``static/``, 0BSD) polls
the live tables, so nothing needs a JavaScript build. Install with ``pip install 'pgqueue[web]'``.
Read-only unless started with a write token (:mod:`pgqueue.web.auth`).
"""

from __future__ import annotations

from pgqueue.web.app import ConsoleConfig, create_app

__all__ = ["ConsoleConfig", "create_app"]
