"""The digest benchmark's world: a seeded week of one busy channel, with 25 planted items among the chatter.

Each planted item (a decision with its outcome, an action with its owner, a question left open) is said
over two or three messages, in a thread or among top-level messages, and carries key words that appear
nowhere else in the channel, so a digest covers it when one bullet holds them. The units are built the
way the Slack side builds them: a thread is a unit; top-level messages form runs, broken after an hour's
quiet or at 40 messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from handlers.qa.digest import SourceMessage, Unit

WEEK_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()  # a Monday, 08:00
WORKDAY_SECONDS = 10 * 3600
RUN_GAP_SECONDS = 3600
RUN_MAX = 40
THREADS = 80  # at the default 2,000 messages; fewer for smaller runs
PEOPLE = ("priya", "marco", "lena", "tom", "aisha", "jonas", "mei", "omar", "sara", "felix", "nadia", "ravi")


@dataclass(frozen=True)
class Planted:
    kind: str  # decision, action or question
    keys: tuple[str, ...]  # words only this item uses; a bullet covers it when it holds `need` of them
    said: tuple[tuple[str, str], ...]  # (author, text) in the order people said them
    threaded: bool
    owner: str | None = None

    @property
    def need(self) -> int:
        return min(2, len(self.keys))

    def covered_by(self, text: str) -> bool:
        lowered = text.lower()
        return sum(key in lowered for key in self.keys) >= self.need


PLANTED: tuple[Planted, ...] = (
    # Decisions, with what was decided.
    Planted(
        "decision",
        ("postgres", "billing", "thursday"),
        (
            ("tom", "Can we do the postgres 17 upgrade on the billing cluster this week?"),
            ("mei", "staging has run postgres 17 for three days without a single error"),
            ("tom", "Decided: the billing postgres 17 upgrade goes ahead Thursday night"),
        ),
        threaded=True,
    ),
    Planted(
        "decision",
        ("arm64", "runners"),
        (
            ("jonas", "The arm64 runners finished the build in half the time"),
            ("felix", "ok, we agreed to move all CI runners to arm64 from next sprint"),
        ),
        threaded=True,
    ),
    Planted(
        "decision",
        ("launchdarkly", "unleash"),
        (
            ("nadia", "LaunchDarkly wants twice the price at renewal"),
            ("ravi", "Unleash self-hosted covers everything we use"),
            ("nadia", "Decision: we drop LaunchDarkly and switch the flags to Unleash"),
        ),
        threaded=True,
    ),
    Planted(
        "decision",
        ("freeze", "december"),
        (
            ("sara", "When does the release freeze start this year?"),
            ("marco", "we settled it: the code freeze starts December 12 and lasts two weeks"),
        ),
        threaded=False,
    ),
    Planted(
        "decision",
        ("monorepo", "bazel"),
        (
            ("felix", "The monorepo proposal is ready, bazel for the builds"),
            ("lena", "everyone in the review voted yes, so the monorepo with bazel is approved"),
        ),
        threaded=True,
    ),
    Planted(
        "decision",
        ("wireguard", "openvpn"),
        (
            ("omar", "WireGuard has been stable for a month"),
            ("priya", "Then it is decided: OpenVPN is switched off and everyone moves to WireGuard"),
        ),
        threaded=False,
    ),
    Planted(
        "decision",
        ("pagerduty", "rotation"),
        (
            ("aisha", "the PagerDuty rotation of two weeks is burning people out"),
            ("tom", "agreed, we decided the PagerDuty rotation becomes one week from the 16th"),
        ),
        threaded=True,
    ),
    Planted(
        "decision",
        ("loki", "elasticsearch"),
        (
            ("ravi", "Elasticsearch costs us a fortune for logs nobody reads"),
            ("mei", "Loki handled the whole load test fine"),
            ("ravi", "Final call: logs move from Elasticsearch to Loki by the end of the month"),
        ),
        threaded=False,
    ),
    Planted(
        "decision",
        ("standup", "async"),
        (
            ("lena", "Could the Friday standup be written instead of a call?"),
            ("sara", "yes, decided: the Friday standup is async in the channel from now on"),
        ),
        threaded=True,
    ),
    # Action items, each with an owner who said so.
    Planted(
        "action",
        ("vault", "token"),
        (
            ("omar", "The Vault token for the deploy bot expires on Friday"),
            ("priya", "I'll rotate the Vault token for the deploy bot tomorrow morning"),
        ),
        threaded=True,
        owner="priya",
    ),
    Planted(
        "action",
        ("certificate", "kestrel"),
        (
            ("felix", "the TLS certificate for api.kestrel.io runs out in nine days"),
            ("marco", "I will renew the kestrel certificate today"),
        ),
        threaded=False,
        owner="marco",
    ),
    Planted(
        "action",
        ("postmortem", "checkout"),
        (
            ("tom", "we need a postmortem for Tuesday's checkout outage"),
            ("lena", "I'll write the checkout postmortem and share it by Wednesday"),
        ),
        threaded=True,
        owner="lena",
    ),
    Planted(
        "action",
        ("runbook", "redis", "failover"),
        (
            ("aisha", "the redis failover runbook still mentions the old hosts"),
            ("tom", "I will update the redis failover runbook this week"),
        ),
        threaded=False,
        owner="tom",
    ),
    Planted(
        "action",
        ("offsite", "lisbon"),
        (
            ("nadia", "The team offsite will be in Lisbon in May"),
            ("aisha", "I'll book the Lisbon offsite venue before prices go up"),
        ),
        threaded=True,
        owner="aisha",
    ),
    Planted(
        "action",
        ("airflow", "cron"),
        (
            ("mei", "the cron box fell over again last night"),
            ("jonas", "I'll migrate the last cron jobs to Airflow by Monday"),
        ),
        threaded=True,
        owner="jonas",
    ),
    Planted(
        "action",
        ("soc 2", "evidence"),
        (
            ("sara", "The SOC 2 auditors want the access review evidence"),
            ("mei", "I will collect the SOC 2 evidence and upload it to the portal"),
        ),
        threaded=False,
        owner="mei",
    ),
    Planted(
        "action",
        ("s3", "buckets", "legacy"),
        (
            ("ravi", "there are forty S3 buckets tagged legacy costing money"),
            ("omar", "I'll clean up the legacy S3 buckets after checking with their owners"),
        ),
        threaded=True,
        owner="omar",
    ),
    Planted(
        "action",
        ("scorecards", "hiring"),
        (
            ("felix", "the hiring committee meets on Wednesday"),
            ("sara", "I will send the hiring scorecards to the committee tonight"),
        ),
        threaded=False,
        owner="sara",
    ),
    # Questions nobody answered.
    Planted(
        "question",
        ("flaky", "e2e"),
        (
            ("lena", "Who owns the flaky e2e payment test now?"),
            ("jonas", "no idea, it has been flaky for weeks"),
        ),
        threaded=True,
    ),
    Planted(
        "question",
        ("copilot", "seats"),
        (("marco", "Should we pay for Copilot seats for the whole team, or only for a trial group?"),),
        threaded=False,
    ),
    Planted(
        "question",
        ("gpu", "budget"),
        (
            ("nadia", "What is the GPU budget for next quarter?"),
            ("ravi", "finance has not said anything about the GPU budget yet"),
        ),
        threaded=True,
    ),
    Planted(
        "question",
        ("ios 15", "mobile"),
        (("aisha", "Do we still need to support iOS 15 in the mobile app?"),),
        threaded=False,
    ),
    Planted(
        "question",
        ("datadog", "contract"),
        (
            ("priya", "When does the Datadog contract renew?"),
            ("felix", "good question, I can't find the Datadog contract anywhere"),
        ),
        threaded=True,
    ),
    Planted(
        "question",
        ("terraform", "modules"),
        (("omar", "Who reviews the terraform modules while the platform lead is away?"),),
        threaded=False,
    ),
    Planted(
        "question",
        ("kafka", "decommission"),
        (
            ("mei", "Are we going to decommission the staging kafka cluster or not?"),
            ("tom", "nobody has decided on the kafka decommission yet"),
        ),
        threaded=True,
    ),
)

_OPENERS = ("", "", "morning all,", "quick one:", "fyi", "heads up,", "hey team,", "ok so", "btw", "small update:")
_TOPICS = (
    "the dashboard looks slow again",
    "the coffee machine on the third floor is broken",
    "lunch at the noodle place?",
    "my laptop fan is so loud today",
    "PR {n} is up if anyone has a minute",
    "the build on main is green again",
    "who moved the whiteboard markers",
    "great demo yesterday",
    "I'm out this afternoon for the dentist",
    "reading the design doc now",
    "nice catch on that bug in PR {n}",
    "the linter is complaining about imports",
    "can someone look at my review",
    "meeting room B is double booked",
    "the numbers on the weekly sheet look fine",
    "I pushed a fix for the typo on the landing page",
    "is the printer working for anyone",
    "trying out the new keyboard shortcuts",
    "happy birthday {name}!",
    "ticket {n} is done",
    "anyone else seeing the slow login page",
    "the train was late again",
    "shipping the small copy change now",
    "thanks {name} for the help earlier",
    "the office plants need water",
    "back from lunch",
    "pairing with {name} this afternoon",
    "the wiki search is useless, as ever",
)
_CLOSERS = ("", "", "", "thanks!", ":)", "cheers", "no rush", "more later", "if you have time")
_REPLIES = (
    "+1",
    "agreed",
    "makes sense",
    "looking now",
    "thanks!",
    "same here",
    "haha",
    "I can take a look after lunch",
    "not sure tbh",
    "good point",
    "sounds good to me",
    "let me check",
    "nice",
    "interesting",
    "hmm, I thought so too",
    "can we talk about it at the sync",
    "ok",
    "following",
)
_THREAD_OPENERS = (
    "thoughts on the new onboarding doc?",
    "the release notes draft is ready, comments welcome",
    "the flamegraph from yesterday, any ideas?",
    "retro notes from the last sprint",
    "trying to understand why the cache hit rate dropped",
    "proposal for the team lunch plan",
    "the UI review for the settings page",
    "question about the expense tool",
    "PR {n} needs a second reviewer",
    "interview loop for the frontend role",
)


@dataclass(frozen=True)
class World:
    units: list[Unit]
    planted: tuple[Planted, ...]
    messages: int
    threads: int


def build(messages: int = 2000, *, seed: int = 7) -> World:
    """About `messages` messages over five workdays: threads, top-level chatter and the planted items."""
    rng = random.Random(seed)
    threads = max(sum(p.threaded for p in PLANTED), round(THREADS * messages / 2000))
    in_threads = max(threads, messages * 35 // 100)
    reply_counts = _split(in_threads - threads, threads, rng)
    times = sorted(_working_time(rng) for _ in range(messages - in_threads + threads))
    parents = set(rng.sample(range(len(times)), threads))
    loose = [t for i, t in enumerate(times) if i not in parents]
    built_threads = [
        _thread(times[at], reply_counts[index], _planted_for(index, threads), rng)
        for index, at in enumerate(sorted(parents))
    ]
    plants_on_top = [p for p in PLANTED if not p.threaded]
    loose_messages = _loose(loose, plants_on_top, rng)
    units = _units(built_threads, loose_messages)
    _check(units)
    return World(units, PLANTED, sum(len(u.messages) for u in units), threads)


def _planted_for(thread_index: int, threads: int) -> Planted | None:
    threaded = [p for p in PLANTED if p.threaded]
    # Spread the planted threads through the week: every few threads, not the first ones only.
    stride = max(1, threads // len(threaded))
    if thread_index % stride or thread_index // stride >= len(threaded):
        return None
    return threaded[thread_index // stride]


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` replies over `parts` threads, unevenly (a few long threads, many short ones)."""
    weights = [rng.paretovariate(1.5) for _ in range(parts)]
    scale = max(0, total) / sum(weights)
    counts = [int(w * scale) for w in weights]
    for index in rng.sample(range(parts), max(0, total) - sum(counts)):
        counts[index] += 1
    return counts


def _working_time(rng: random.Random) -> float:
    return WEEK_START + rng.randrange(5) * 86400 + rng.random() * WORKDAY_SECONDS


def _chatter(rng: random.Random) -> str:
    topic = rng.choice(_TOPICS).format(n=rng.randrange(100, 9999), name=rng.choice(PEOPLE))
    return " ".join(part for part in (rng.choice(_OPENERS), topic, rng.choice(_CLOSERS)) if part)


def _thread(at: float, replies: int, plant: Planted | None, rng: random.Random) -> list[SourceMessage]:
    parent_ts = f"{at:.6f}"
    said = list(plant.said) if plant else []
    opener = said.pop(0) if said else (rng.choice(PEOPLE), rng.choice(_THREAD_OPENERS).format(n=rng.randrange(9999)))
    chatter = [(rng.choice(PEOPLE), rng.choice(_REPLIES)) for _ in range(max(0, replies - len(said)))]
    # The planted replies keep their order, with chatter between them.
    slots = sorted(rng.sample(range(len(chatter) + len(said)), len(said)))
    body: list[tuple[str, str]] = []
    for index in range(len(chatter) + len(said)):
        body.append(said.pop(0) if index in slots else chatter.pop(0))
    thread = [SourceMessage(parent_ts, opener[0], opener[1], parent_ts)]
    when = at
    for author, text in body:
        when += rng.uniform(30, 1800)
        thread.append(SourceMessage(f"{when:.6f}", author, text, parent_ts))
    return thread


def _loose(times: list[float], plants: list[Planted], rng: random.Random) -> list[SourceMessage]:
    said: dict[int, list[tuple[str, str]]] = {}
    for plant, start in zip(plants, sorted(rng.sample(range(max(1, len(times) - 8)), len(plants))), strict=True):
        for offset, line in enumerate(plant.said):
            said.setdefault(start + offset * 3, []).append(line)
    out = []
    for index, at in enumerate(times):
        author, text = said[index].pop(0) if said.get(index) else (rng.choice(PEOPLE), _chatter(rng))
        out.append(SourceMessage(f"{at:.6f}", author, text))
    for index, left in said.items():  # a crowded slot: say the rest a moment later
        for offset, (author, text) in enumerate(left, start=1):
            out.append(SourceMessage(f"{times[min(index, len(times) - 1)] + offset:.6f}", author, text))
    return sorted(out, key=lambda m: float(m.ts))


def _units(threads: list[list[SourceMessage]], loose: list[SourceMessage]) -> list[Unit]:
    units = [(float(thread[0].ts), Unit(tuple(thread))) for thread in threads]
    run: list[SourceMessage] = []
    for message in loose:
        if run and (float(message.ts) - float(run[-1].ts) > RUN_GAP_SECONDS or len(run) >= RUN_MAX):
            units.append((float(run[0].ts), Unit(tuple(run))))
            run = []
        run.append(message)
    if run:
        units.append((float(run[0].ts), Unit(tuple(run))))
    return [unit for _, unit in sorted(units, key=lambda pair: pair[0])]


def _check(units: list[Unit]) -> None:
    """A planted item's key words must appear in its own messages and nowhere else, or coverage lies."""
    texts = [m.text.lower() for unit in units for m in unit.messages]
    for plant in PLANTED:
        own = {text.lower() for _, text in plant.said}
        for key in plant.keys:
            if not any(key in text for text in own):
                raise AssertionError(f"planted key {key!r} is not in its own messages")
            elsewhere = next((text for text in texts if key in text and text not in own), None)
            if elsewhere is not None:
                raise AssertionError(f"planted key {key!r} also appears outside its item: {elsewhere!r}")
