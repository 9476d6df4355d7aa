"""A task module that imports in the supervisor but fails in every slot child (a module whose
import depends on the environment the child meets): the slot must back off, not spin."""

from __future__ import annotations

import multiprocessing

from pgqueue import task

if multiprocessing.parent_process() is not None:
    raise ImportError("badslot_tasks refuses to load in a slot process")


@task(name="b.noop")
def noop() -> None:
    return None
