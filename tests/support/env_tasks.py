"""A task that reports the configuration its pod gave it (the k8s tier's ``spec.pod`` test)."""

from __future__ import annotations

import os
from typing import Any

from pgqueue import task


@task(name="envprobe.settings")
def settings(*names: str) -> dict[str, Any]:
    """The named variables as the task sees them (None when unset)."""
    return {name: os.environ.get(name) for name in names}
