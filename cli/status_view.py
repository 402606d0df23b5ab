"""``settlekeeper status`` for people: the first line says whether money moves, then what is due, the cash,
the limits, the listener, the queues, the guardrails, the open alerts and what needs a human."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cli.output import Out, age, minutes
from cli.status import Status
from funding.calendar import to_et
from funding.money import display


def _money(value: Decimal | None) -> str:
    return "unreadable" if value is None else display(value)


def forecast_line(found: dict[str, Any] | None) -> str:
    """The last forecast kept, in one line (``settlekeeper forecast`` has the table)."""
    if not found:
        return "none yet (made at 09:30 and 15:00 ET; `settlekeeper forecast` makes one now)"
    at = to_et(datetime.fromisoformat(found["computed_at"])).strftime("%a %H:%M")
    rec = found.get("recommendation")
    if rec is None:
        last = found["deadlines"][-1]["deadline"] if found.get("deadlines") else "?"
        return f"RF covers every deadline through {last} (as of {at})"
    return (
        f"wire {display(Decimal(rec['amount']))} into RF, credited by {rec['wire_by']}, covering through "
        f"{rec['covers_through']}; not sending it costs {display(Decimal(rec['cost_if_not']['total']))} (as of {at})"
    )


def _wire_asked(found: dict[str, Any] | None) -> bool:
    return bool(found and found.get("recommendation"))


def render(status: Status, out: Out) -> None:
    at = to_et(status.now).strftime("%a %Y-%m-%d %H:%M ET")
    if status.kill_switch is not None:
        kill = status.kill_switch
        out.line(f"PAUSED: no money moves (by {kill['by']} since {kill['since']}: {kill['reason']})", "red")
    else:
        out.line(f"settlekeeper at {at}: money moves ({_modes(status)})", "green" if not status.problems else None)
    out.line()
    out.line("Due")
    out.table(
        ["deadline", "due", "amount", "done", "open", "owed", "interest", "to 1 PM", "to 8 PM"],
        [
            [
                d.deadline,
                d.due_count,
                display(d.due_amount),
                d.settled_count,
                d.unsettled_count,
                display(d.unsettled_amount),
                display(d.interest),
                minutes(d.minutes_to_cutoff),
                minutes(d.minutes_to_cancel),
            ]
            for d in status.deadlines
        ],
    )
    cash = status.cash
    out.line()
    out.line(
        f"Cash  SI {_money(cash['SI'])}  RF {_money(cash['RF'])} (available {_money(status.rf_available)})  "
        f"FW {_money(cash['FW'])}"
    )
    out.line(f"      projected shortfall {display(status.shortfall)}", "red" if status.shortfall > 0 else None)
    out.line("Limits  " + "  ".join(_limit(name, value) for name, value in status.limits.items()))
    _listener(status, out)
    queues = "  ".join(
        f"{n.removeprefix('settlekeeper-')} {q['queued']}/{q['failed']}" for n, q in status.queues.items()
    )
    out.line(f"Queues  {queues} (queued/failed); dead letters {status.dead_letters}")
    out.line(f"Guardrails  {_modes(status)}; kill switch {'ON' if status.paused else 'off'}")
    out.line(f"Forecast  {forecast_line(status.forecast)}", "red" if _wire_asked(status.forecast) else None)
    out.line(f"Alerts  {len(status.alerts)} open")
    if status.alerts:
        wall = datetime.now(UTC)
        rows = [[a["severity"], a["kind"], age(a["since"], wall), a["dedup_key"]] for a in status.alerts]
        out.table(["severity", "kind", "since", "key"], rows)
    if status.problems:
        out.line()
        out.line("Needs a human before the next cutoff:", "red")
        for problem in status.problems:
            out.line(f"  - {problem}")


def _modes(status: Status) -> str:
    return ", ".join(f"{action} {mode}" for action, mode in status.modes.items())


def _limit(name: str, value: dict[str, Decimal] | None) -> str:
    label = {"instant_funding": "IF", "jit": "JIT"}.get(name, name)
    return (
        f"{label} unreadable" if value is None else f"{label} {display(value['in_use'])} of {display(value['limit'])}"
    )


def _listener(status: Status, out: Out) -> None:
    listener = status.listener
    if not listener["leader"]:
        out.line("Listener  no leader", "red")
        return
    out.line(f"Listener  leader {listener['leader']}")
    for name, stream in listener["streams"].items():
        state = "connected" if stream.get("connected") else "DISCONNECTED"
        cursor, event = stream.get("cursor_age_seconds"), stream.get("last_event_age_seconds")
        ages = f"cursor moved {_ago(cursor)}, last message {_ago(event)}"
        out.line(f"  {name:<11} {state:<12} {ages}", None if stream.get("connected") else "red")


def _ago(seconds: int | None) -> str:
    return "never" if seconds is None else f"{seconds}s ago"
