"""What reconciliation compares and which differences stop trading: pure rules over the log's state and the
venue's answers (the adapter fetches, the live node records).

A balance differs when the venue's total of a currency is not the log's (fills folded from the last reported
balances); both sides are exact decimals, compared as they are. Blocking differences — a balance, an order with
this namespace's client id that the log does not hold — mean the log no longer describes the account: the session
records them and halts until an operator looks. An order of someone else's (external) or an accepted order the
venue no longer lists (looked up again on the next check) is recorded and does not block.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.decimals import ZERO, exact_text

BLOCKING = frozenset({"balance", "unknown_at_venue"})


def balance_mismatches(local: dict[str, Decimal], reported: dict[str, Any]) -> list[dict[str, Any]]:
    """One mismatch per currency whose venue total differs from the log's (a reported AccountState payload)."""
    venue = {b["currency"]: b["total"] for b in reported["balances"]}
    out = []
    for cur in sorted(set(local) | set(venue)):
        mine, theirs = local.get(cur, ZERO), venue.get(cur, ZERO)
        if mine != theirs:
            out.append({"kind": "balance", "client_order_id": None, "field": f"balance.{cur}.total",
                        "local": exact_text(mine), "venue": exact_text(theirs)})
    return out


def blocking(mismatches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mismatches that must stop trading."""
    return [m for m in mismatches if m["kind"] in BLOCKING]


def halt_reason(mismatches: list[dict[str, Any]]) -> str:
    """One line naming what disagrees (the reconciliation_mismatch incident's detail)."""
    parts = [f"{m['field']} log {m['local']} venue {m['venue']}" if m["kind"] == "balance"
             else f"{m['kind']} {m['client_order_id']} (venue order {m['venue']})" for m in mismatches[:3]]
    more = f" and {len(mismatches) - 3} more" if len(mismatches) > 3 else ""
    return "reconciliation: " + "; ".join(parts) + more
