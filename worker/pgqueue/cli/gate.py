"""``pgqueue gate on|off|status``: the gate flag outside Kubernetes (inside, a ConfigMap)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket

from pgqueue import admin
from pgqueue.cli.common import add_dsn, dsn_of


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gate",
        help="Show or flip the pg_queue_enabled gate (on: calls go to Postgres; off: fallback).",
    )
    p.add_argument(
        "action", choices=["on", "off", "status"], help="Turn the gate on or off, or show it."
    )
    add_dsn(p)
    p.add_argument("--json", action="store_true", help="Print the flag as JSON.")
    p.add_argument(
        "--source",
        default=None,
        help="Who flips it, recorded with the flag (default: cli user@host).",
    )
    p.set_defaults(handler=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    dsn = dsn_of(args)
    if args.action == "status":
        state = admin.get_flag(dsn, admin.GATE_FLAG)
        if state is None:
            print(json.dumps(None) if args.json else "gate pg_queue_enabled: never set (off)")
            return 0
    else:
        source = args.source or f"cli {getpass.getuser()}@{socket.gethostname()}"
        state = admin.set_flag(
            dsn, admin.GATE_FLAG, enabled=args.action == "on", value=args.action, source=source
        )
    record = {
        "key": state.key,
        "enabled": state.enabled,
        "value": state.value,
        "source": state.source,
        "updated_at": state.updated_at.isoformat(),
    }
    if args.json:
        print(json.dumps(record))
    else:
        print(
            f"gate {state.key}: {'on' if state.enabled else 'off'} (value {state.value!r}, "
            f"source {state.source!r}, changed {state.updated_at.isoformat()})"
        )
    return 0
