"""``pgqueue gate on|off|status``: the gate flag outside Kubernetes (inside, a ConfigMap)."""

from __future__ import annotations

import argparse
import json

from pgqueue import admin
from pgqueue.admin import parse_flag_value
from pgqueue.cli.common import add_connection, connection, via, who


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gate",
        help="Show or flip the pg_queue_enabled gate (on: calls go to Postgres; off: fallback).",
    )
    p.add_argument(
        "action", choices=["on", "off", "status"], help="Turn the gate on or off, or show it."
    )
    add_connection(p)
    p.add_argument("--json", action="store_true", default=False, help="Print the flag as JSON.")
    p.add_argument(
        "--source",
        default=None,
        help="Who flips it, recorded with the flag (default: cli user@host).",
    )
    p.set_defaults(handler=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    conn = connection(args)
    if args.action == "status":
        state = admin.get_flag(conn.dsn, admin.GATE_FLAG, **via(conn))
        if state is None:
            print(json.dumps(None) if args.json else "gate pg_queue_enabled: never set (off)")
            return 0
    else:
        state = admin.set_flag(
            conn.dsn,
            admin.GATE_FLAG,
            enabled=args.action == "on",
            value=args.action,
            source=args.source or who(),
            **via(conn),
        )
    effective = _effective(state)
    record = {
        "key": state.key,
        "enabled": state.enabled,
        "value": state.value,
        "effective": "on" if effective else "off",
        "source": state.source,
        "updated_at": state.updated_at.isoformat(),
    }
    if args.action != "status":
        record["changed"] = state.changed
    if args.json:
        print(json.dumps(record))
        return 0
    note = "" if parse_flag_value(state.value or "off") is not None else " — unparseable, so off"
    print(f"gate {state.key}: {record['effective']}")
    print(f"  value:   {state.value!r}{note}")
    print(f"  enabled: {str(state.enabled).lower()}")
    print(f"  source:  {state.source or '-'}")
    print(f"  changed: {state.updated_at.isoformat()}")
    if args.action != "status" and not state.changed:
        print("  (it already was; nothing flipped)")
    return 0


def _effective(state: admin.FlagState) -> bool:
    """What the gate makes of the flag: the raw value when there is one; unparseable is off."""
    if not state.value:
        return state.enabled
    return parse_flag_value(state.value) is True
