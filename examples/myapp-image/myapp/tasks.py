"""The tasks of ``myapp``: what ``spec.tasks: [myapp.tasks]`` makes the worker import.

They read their configuration the way real task code does: settings from the environment (a
ConfigMap through ``envFrom``, or ``env``), a credential from a Secret, a file from a volume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pgqueue import task

import myapp

SETTINGS_FILE = Path(os.environ.get("MYAPP_SETTINGS_FILE", "/etc/myapp/settings.toml"))


@task(name="myapp.greet")
def greet(name: str) -> dict[str, Any]:
    """A greeting built from the pod's configuration; it never returns the credential itself."""
    api_key = os.environ.get("MYAPP_API_KEY", "")
    return {
        "greeting": f"{os.environ.get('MYAPP_GREETING', 'Hello')}, {name}!",
        "mode": os.environ.get("MYAPP_MODE", "unset"),
        "api_key_set": bool(api_key),
        "api_key_length": len(api_key),
        "settings_file": SETTINGS_FILE.read_text().strip() if SETTINGS_FILE.is_file() else None,
        "version": myapp.__version__,
        "worker": os.environ.get("PGQUEUE_WORKER_ID", ""),
    }
