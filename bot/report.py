"""The nightly learning report: after each training run, one Slack message to EMBER_REPORT_CHANNEL that
says what the run learned from, what the eval gate measured and decided, and which version now serves.

Everything comes from the run's record (`training_runs.detail`, written by models.train_job) and the
registry. Records from older releases, or from a run killed halfway, lack some fields; the report
then says what is missing instead of failing, since a report that cannot be posted tells nobody
anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient

from db import Database
from db.repo import latest_training_run
from db.schema import TrainingRun
from handlers.slack.mrkdwn import escape
from models import registry
from models.evaluation import FIGURES
from models.registry import VersionInfo

log = logging.getLogger(__name__)

_LEFT_OUT = {
    "private": "from private conversations",
    "empty": "empty",
    "conflicting": "with votes that cancel out",
    "over_cap": "over the size cap",
}


@dataclass(frozen=True)
class RunReport:
    run_id: int
    text: str


def latest_report(database: Database, *, serving: str | None = None) -> RunReport | None:
    """The report of the latest training run; None when there is none yet or it is still running.

    `serving` is the version the bot actually serves; without it the registry's active version is named.
    """
    with database.session() as session:
        run = latest_training_run(session)
        if run is None or run.status == "running":
            return None
        candidate = registry.get(session, version=run.candidate_version) if run.candidate_version else None
        text = report_text(run, active=registry.active(session), candidate=candidate, serving=serving)
        return RunReport(run.id, text)


def report_text(
    run: TrainingRun, *, active: VersionInfo | None, candidate: VersionInfo | None, serving: str | None
) -> str:
    """Slack mrkdwn for one finished run."""
    detail = _detail(run)
    lines = [_headline(run, detail), _data_line(run, detail)]
    left_out = _left_out_line(detail)
    if left_out:
        lines.append(left_out)
    augmented = _augmentation_line(detail)
    if augmented:
        lines.append(augmented)
    if run.status in ("promoted", "rejected"):
        lines.extend(_gate_lines(detail, candidate))
        lines.append(_training_line(run, detail))
    lines.append(_serving_line(active, serving))
    return "\n".join(lines)


def post_report(client: WebClient, *, channel: str, report: RunReport) -> None:
    client.chat_postMessage(channel=channel, text=report.text, unfurl_links=False, unfurl_media=False)


def report_new_run(
    database: Database, client: WebClient, *, channel: str, serving: str | None, last_reported: int | None
) -> int | None:
    """Post the latest finished run unless it is `last_reported`; return the id posted, or None if none was.

    The nightly job may leave no run of its own (another run held the lock, or the process died before
    it opened its record), so the latest run can be one already posted.
    """
    report = latest_report(database, serving=serving)
    if report is None or report.run_id == last_reported:
        return None
    post_report(client, channel=channel, report=report)
    log.info("reported training run %d to %s", report.run_id, channel)
    return report.run_id


# --- the parts of the message ---------------------------------------------------------------------


def _headline(run: TrainingRun, detail: Mapping[str, Any]) -> str:
    title = f"*Training run {run.id}: {escape(run.status)}*"
    if run.status in ("promoted", "rejected"):
        version = f" `{escape(run.candidate_version)}`" if run.candidate_version else ""
        return f"{title}{version}"
    if run.status == "skipped":
        return f"{title} ({_text(detail.get('reason'), 'no reason recorded')})"
    if run.status == "failed":
        return f"{title}: {_text(detail.get('error'), 'no error recorded')}"
    return title


def _data_line(run: TrainingRun, detail: Mapping[str, Any]) -> str:
    # The row's columns back up the JSON: they are written together, but the row is the older record.
    data = _mapping(detail.get("data"))
    examples = _count(data.get("examples"), run.examples)
    desirable = _count(data.get("desirable"), run.desirable)
    undesirable = _count(data.get("undesirable"), run.undesirable)
    parts = [f"{examples} examples ({desirable} desirable, {undesirable} undesirable)"]
    sources = _counts(data.get("sources"))
    if sources:
        parts.append(", ".join(f"{count} {escape(name)}" for name, count in sources.items()))
    train, held_out = _int(data.get("train")), _int(data.get("held_out"))
    if train is not None and held_out is not None:
        parts.append(f"{train} to train on, {held_out} held out for the gate")
    return "*Training data:* " + "; ".join(parts)


def _left_out_line(detail: Mapping[str, Any]) -> str | None:
    left_out = _counts(_mapping(detail.get("data")).get("left_out"))
    if not left_out:
        return None
    parts = [f"{count} {_LEFT_OUT.get(reason, escape(reason))}" for reason, count in left_out.items() if count]
    return "*Left out:* " + ", ".join(parts) if parts else None


def _augmentation_line(detail: Mapping[str, Any]) -> str | None:
    augmentation = _mapping(detail.get("augmentation"))
    if not augmentation or augmentation.get("enabled") is False:
        return None
    if isinstance(augmentation.get("error"), str):
        return f"*In more words:* skipped, the rephrasing failed ({escape(augmentation['error'])})"
    written, sources = _int(augmentation.get("examples")), _int(augmentation.get("from"))
    if written is None or sources is None:
        return None
    line = f"*In more words:* {sources} answers rephrased into {written} more examples"
    items = augmentation.get("items")
    first = (
        next((item for item in items if isinstance(item, Mapping) and item.get("questions")), None)
        if isinstance(items, list)
        else None
    )
    if first is not None and isinstance(first.get("question"), str):
        asked = first["questions"][0]
        if isinstance(asked, str):
            line += f", e.g. “{escape(first['question'])}” also as “{escape(asked)}”"
    return line


def _gate_lines(detail: Mapping[str, Any], candidate: VersionInfo | None) -> list[str]:
    # The run's record holds the gate's verdict; the candidate's registry row holds the same figures,
    # which is all an older record has.
    gate = _mapping(detail.get("gate")) or _mapping(candidate.metrics if candidate else None)
    if not gate:
        return ["*Eval gate:* no figures recorded"]
    promote = gate.get("promote")
    decision = "promote" if promote is True else "reject" if promote is False else ""
    reason = _text(gate.get("reason"), "")
    summary = " – ".join(part for part in (decision, reason) if part) or "no decision recorded"
    before, after, checks = _mapping(gate.get("active")), _mapping(gate.get("candidate")), _mapping(gate.get("checks"))
    lines = [f"*Eval gate:* {summary} (served version → candidate; likelihoods per token, nearer 0 is likelier)"]
    for key, label, check in FIGURES:
        if key not in before and key not in after:
            continue
        if key == "paraphrased" and before.get(key) is None and after.get(key) is None:
            continue  # nothing was rephrased: there is no figure, and nothing was missed
        shown = _percent if key == "general_accuracy" else _figure
        verdict = _verdict(checks.get(check)) if check else ""
        lines.append(f"• {label}: {shown(before.get(key))} → {shown(after.get(key))}{verdict}")
    return lines


def _training_line(run: TrainingRun, detail: Mapping[str, Any]) -> str:
    train = _mapping(detail.get("train"))
    parts = [f"loss {run.loss:.4f}" if run.loss is not None else "loss not recorded"]
    steps = _int(train.get("steps"))
    if steps is not None:
        parts.append(f"{steps} steps")
    if isinstance(train.get("device"), str):
        parts.append(f"on {escape(train['device'])}")
    seconds = _number(detail.get("seconds"))
    if seconds is not None:
        parts.append(f"{seconds:.0f} s in all")
    return "*Training:* " + ", ".join(parts)


def _serving_line(active: VersionInfo | None, serving: str | None) -> str:
    if serving is None:
        return f"*Now serving:* `{escape(active.version)}`" if active else "*Now serving:* unknown"
    line = f"*Now serving:* `{escape(serving)}`"
    if active is not None and active.version != serving:
        # The swap failed or has not happened yet; the log says which.
        line += f" (the registry's active version is `{escape(active.version)}`)"
    return line


# --- reading a record that may be incomplete --------------------------------------------------------


def _detail(run: TrainingRun) -> Mapping[str, Any]:
    try:
        loaded = json.loads(run.detail) if run.detail else {}
    except ValueError:
        return {}
    return _mapping(loaded)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: object, fallback: int) -> int:
    found = _int(value)
    return found if found is not None else fallback


def _counts(value: object) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, count in _mapping(value).items():
        number = _int(count)
        if number is not None:
            counts[str(name)] = number
    return counts


def _text(value: object, missing: str) -> str:
    return escape(value) if isinstance(value, str) and value.strip() else missing


def _figure(value: object) -> str:
    number = _number(value)
    return f"{number:.3f}" if number is not None else "n/a"


def _percent(value: object) -> str:
    number = _number(value)
    return f"{number:.0%}" if number is not None else "n/a"


def _verdict(ok: object) -> str:
    if ok is True:
        return " (passed)"
    return " (failed)" if ok is False else " (not checked)"
