"""Memory retrieval at scale: Ember's hybrid search beside keyword-only and brute-force vector search.

    python -m bench.retrieval                   # 1,000,000 stored memories (about 10-15 minutes on 2 cores)
    python -m bench.retrieval --turns 20000     # a quick run

It generates a synthetic history of several workspaces (public and private channels, DMs, threads;
facts, corrections and remembered turns), stores it in a SQLite file in a temporary directory
through db.memory, and then asks held-out questions whose right memory is known. Each question is a
paraphrase: reworded from a separate bank of phrasings, with the subject often called by another
name, so that neither the stored text nor the stored question is copied. It prints one table:

  (a) Ember       search_memories: FTS5 bm25 + the in-process vector index, fused (RRF)
      index only  the vector index alone (how much the keyword half adds)
  (b) FTS5 only   keyword search alone (bm25), the visibility filter in SQL
      brute force numpy cosine over every stored vector the asker may see (exact)

Every method applies the same visibility rule, and every hit is checked against db.visibility.can_see.
Latency is per question, one database session each: the search alone, and with the question's own
embedding (made once per question, one at a time, as a live question is) added.

The held-out answers and their near neighbours (other facts about the same subjects, chatter about
them, the same topic in other workspaces, stale private copies) are embedded one by one with the real
model. The bulk filler reuses the vectors of a smaller pool of distinct generated texts (each filler
row's text is its pool text), so that a million rows load in minutes; the output says how many.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select, text

from db.memory import (
    KINDS,
    STOPWORDS,
    NewMemory,
    VectorIndex,
    add_memories,
    combine_vectors,
    embedding_text,
    embedding_texts,
    keyword_search,
    memory_vectors,
    search_memories,
    vector_search,
)
from db.schema import Memory
from db.session import Database
from db.visibility import Audience, can_see, is_public
from models.embeddings import Embedder

# --- the world -----------------------------------------------------------------------------------

# (workspace id, domain, share of the stored memories): one big workspace, as in a real install.
WORKSPACES = [("T01ACME", "acme", 0.60), ("T02GLOBEX", "globex", 0.22), ("T03INITECH", "initech", 0.12)]
WORKSPACES += [("T04HOOLI", "hooli", 0.06)]
PUBLIC_CHANNELS, PRIVATE_CHANNELS, DMS = 40, 12, 150

FIRST = [
    "Dana",
    "Priya",
    "Tomasz",
    "Aiko",
    "Mateo",
    "Femi",
    "Ingrid",
    "Rahul",
    "Chloe",
    "Omar",
    "Lena",
    "Kwame",
    "Sofia",
    "Jonas",
    "Mei",
    "Diego",
    "Hana",
    "Arjun",
]
LAST = [
    "Whitfield",
    "Okafor",
    "Novak",
    "Tanaka",
    "Silva",
    "Adeyemi",
    "Berg",
    "Sharma",
    "Dubois",
    "Haddad",
    "Fischer",
    "Mensah",
    "Rossi",
    "Lind",
    "Chen",
    "Ortiz",
]
TEAMS = [
    "platform",
    "payments",
    "data",
    "mobile",
    "growth",
    "security",
    "infrastructure",
    "finance",
    "people-ops",
    "support-ops",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
REGIONS = [
    "eu-west-1",
    "us-east-1",
    "us-west-2",
    "ap-southeast-2",
    "eu-central-1",
    "Frankfurt",
    "Dublin",
    "Oregon",
    "Virginia",
]
ROOMS = "the Atlas room|the Birch room|Canteen B|the 4th floor lounge|the Harbour room|Room 301|the big boardroom"
PLACES = ROOMS.split("|")


@dataclass(frozen=True)
class Subject:
    name: str  # how the stored memories say it
    aliases: tuple[str, ...]  # how askers also say it
    category: str  # system or process


def _subjects(category: str, spec: str) -> list[Subject]:
    out = []
    for line in spec.strip().splitlines():
        name, *aliases = (part.strip() for part in line.split("|"))
        out.append(Subject(name, tuple(aliases), category))
    return out


# Aliases are how colleagues vary a name (articles, abbreviations, a word more or less), not other
# product names that only world knowledge could connect.
SUBJECTS = _subjects(
    "system",
    """
    the VPN | the vpn | our VPN | the VPN gateway
    the staging database | the staging db | staging DB | the staging postgres database
    the production database | the prod database | prod db | the production postgres
    the build server | the CI build server | our build machine | the build box
    the payments API | the payment API | payments api | the payments service
    the search cluster | the search servers | our search cluster | the elasticsearch cluster
    the metrics pipeline | the metrics ingestion pipeline | our metrics pipeline | metrics ingestion
    the email gateway | the mail gateway | the outbound email relay | the email relay
    the internal wiki | the wiki | our internal docs wiki | the company wiki
    the artifact registry | the artifacts registry | our artifact repo | the build artifact store
    single sign-on | SSO | the single sign on system | our SSO login
    the data warehouse | the warehouse | our data warehouse | the DWH
    the feature flag service | feature flags | the feature-flag system | the flags service
    the mobile backend | the mobile app backend | the backend for the mobile app | mobile backend servers
    the auth service | the authentication service | auth | the authentication backend
    the message queue | the message broker | our queue | the MQ
    the CDN | our CDN | the content delivery network | the CDN edge
    DNS | our DNS | the DNS servers | internal DNS
    the log archive | the logs archive | archived logs | the log storage archive
    the backup system | the backup service | our backups | backup infrastructure
    the ticket tracker | the issue tracker | our ticketing system | the ticket system
    the BI dashboard | the business intelligence dashboard | the BI dashboards | BI reporting
    the recommendation engine | the recommendations service | the recommender | the recs engine
    the notification service | the notifications service | the push notification service | notifications
    the inventory service | the inventory API | the stock inventory service | inventory
    the image resizer | the image resizing service | the thumbnail resizer | image resizing
    the redis cache | redis | our redis cache | the redis cluster
    the load balancer | the load balancers | our LB | the front load balancer
    the git server | our git server | the git hosting | git hosting
    the secrets vault | the vault | our secrets store | the secret vault
    the kubernetes cluster | kubernetes | k8s | our k8s cluster
    the status page | our status page | the public status page | the service status page
    the helpdesk tool | the helpdesk | our support helpdesk | the help desk system
    the CRM | our CRM | the customer relationship management system | the sales CRM
    the video conferencing system | video calls | the video conference setup | our video meeting system
    the office wifi | the wifi | the wireless network in the office | office wireless
    the office printer | the printer | the printers in the office | office printing
    the timesheet tool | timesheets | the time tracking tool | the timesheet system
    the HR portal | the HR system | our HR website | the people portal
    the design tool | our design software | the design app | design tooling
    """,
) + _subjects(
    "process",
    """
    expense reports | expenses | expense claims | expense reporting
    travel booking | booking travel | business travel bookings | travel bookings
    quarterly planning | the quarterly plan | planning for the quarter | Q planning
    security training | the security course | mandatory security training | infosec training
    the laptop refresh | laptop replacements | new laptops | the hardware refresh
    the office move | moving offices | the move to the new office | the office relocation
    parking permits | parking passes | a parking permit | car park permits
    the holiday party | the holiday celebration | the end of year party | the year-end party
    performance reviews | perf reviews | the performance review cycle | annual reviews
    new hire onboarding | onboarding | onboarding new hires | new starter onboarding
    the team offsite | the offsite | our team off-site | the offsite trip
    the all-hands meeting | all hands | the all-hands | the company all-hands
    the code freeze | the release freeze | code freeze | the freeze
    incident postmortems | postmortems | post-incident reviews | incident retros
    the budget review | budget reviews | the annual budget review | budgeting
    design reviews | the design review | architecture reviews | design crits
    vendor contracts | supplier contracts | contracts with vendors | vendor agreements
    the referral bonus | referral bonuses | employee referrals | the referral program
    the on-call handover | on-call handovers | the pager handover | handing over on-call
    interview loops | interviews | the interview panel | candidate interviews
    sprint planning | sprint planning meetings | planning the sprint | the sprint kickoff
    the hackathon | hack week | the hack day | our hackathon
    customer QBRs | quarterly business reviews | QBRs | customer business reviews
    conference sponsorship | sponsoring conferences | conference sponsorships | event sponsorship
    the learning budget | the training budget | learning and development budget | the education allowance
    """,
)


@dataclass(frozen=True)
class Attribute:
    """One kind of thing worth remembering about a subject, and the ways people say and ask it."""

    key: str
    category: str
    statements: tuple[str, ...]  # how a memory states it ({s}: subject, {v}: value)
    asked: tuple[str, ...]  # how the original asker phrased it (stored as the memory's question)
    paraphrases: tuple[str, ...]  # held-out phrasings (never stored)
    value: Callable[[random.Random, str, str], str]  # (rng, workspace domain, subject slug) -> value


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _a(key: str, category: str, statements: str, asked: str, paraphrases: str, value: Callable[..., str]) -> Attribute:
    return Attribute(
        key, category, tuple(statements.split("|")), tuple(asked.split("|")), tuple(paraphrases.split("|")), value
    )


ATTRIBUTES = [
    _a(
        "host",
        "system",
        "The {s} host is {v}.|{S} is reachable at {v}.",
        "what is the {s} host?|what's the address of {s}?",
        "which hostname do I put in my config to get to {a}?|which server should my client point to for {a}?"
        "|where do I connect to reach {a}?",
        lambda r, d, s: (
            f"{s}.{d}.internal"
            if r.random() < 0.7
            else f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        ),
    ),
    _a(
        "port",
        "system",
        "{S} listens on port {v}.|{S} uses port {v}.",
        "what port does {s} use?",
        "which port number do I open in the firewall for {a}?|on what port is {a} accepting connections?",
        lambda r, d, s: str(r.choice([5432, 6379, 8080, 8443, 9092, 9200, 3306, 27017, 1194, 443]) + r.randrange(3)),
    ),
    _a(
        "owner",
        "system",
        "{S} is owned by the {v} team.|The {v} team owns {s}.",
        "which team owns {s}?",
        "who maintains {a}?|which group is responsible for {a}?|who looks after {a}?",
        lambda r, d, s: r.choice(TEAMS),
    ),
    _a(
        "oncall",
        "system",
        "{v} is on call for {s} this week.|This week's on-call for {s} is {v}.",
        "who is on call for {s}?",
        "who should I page if {a} breaks?|who's carrying the pager for {a} right now?",
        lambda r, d, s: _person(r),
    ),
    _a(
        "dashboard",
        "system",
        "The {s} dashboard is at {v}.|Graphs for {s} live on {v}.",
        "where is the {s} dashboard?",
        "where can I see charts showing how {a} is doing?|is there a monitoring page for {a}?",
        lambda r, d, s: f"https://grafana.{d}.io/d/{s}-{r.randrange(100, 999)}",
    ),
    _a(
        "runbook",
        "system",
        "The {s} runbook lives at {v}.|Instructions for fixing {s} are in {v}.",
        "where is the runbook for {s}?",
        "how do I find the troubleshooting guide for {a}?|where are the incident instructions for {a} written down?",
        lambda r, d, s: f"wiki.{d}.io/ops/{s}/runbook",
    ),
    _a(
        "deploy",
        "system",
        "{S} deploys go out on {v}.|We ship {s} every {v}.",
        "when do we deploy {s}?",
        "which day of the week do releases of {a} happen?|what's the release schedule for {a}?",
        lambda r, d, s: f"{r.choice(WEEKDAYS)}s" + r.choice(["", " after standup", " at 14:00"]),
    ),
    _a(
        "version",
        "system",
        "{S} is running version {v}.|We are on {s} {v}.",
        "what version is {s} on?",
        "which release of {a} do we have installed?|what release of {a} are we running right now?",
        lambda r, d, s: f"{r.randrange(1, 15)}.{r.randrange(0, 30)}.{r.randrange(0, 9)}",
    ),
    _a(
        "region",
        "system",
        "{S} is hosted in {v}.|{S} runs in {v}.",
        "which region is {s} in?",
        "where geographically is {a} running?|what datacenter is {a} deployed to?",
        lambda r, d, s: r.choice(REGIONS),
    ),
    _a(
        "alerts",
        "system",
        "Alerts for {s} go to {v}.|{S} pages are posted in {v}.",
        "where do {s} alerts go?",
        "which slack channel gets warnings when {a} misbehaves?|where do warnings about {a} get posted?",
        lambda r, d, s: f"#alerts-{s}",
    ),
    _a(
        "maintenance",
        "system",
        "The maintenance window for {s} is {v}.|{S} is patched {v}.",
        "when is {s} maintenance?",
        "when is {a} allowed to be taken down for upgrades?|what time is downtime scheduled for {a}?",
        lambda r, d, s: f"{r.choice(WEEKDAYS)}s {r.randrange(0, 5):02d}:00-{r.randrange(5, 8):02d}:00 UTC",
    ),
    _a(
        "access",
        "system",
        "To get access to {s}, file a request with {v}.|Access to {s} is granted by {v}.",
        "how do I get access to {s}?",
        "who hands out permissions for {a}?|I need an account on {a}, where do I request one?",
        lambda r, d, s: r.choice([f"the {r.choice(TEAMS)} team", _person(r), f"the #{s}-access channel"]),
    ),
    _a(
        "backup",
        "system",
        "{S} is backed up {v}.|Snapshots of {s} are taken {v}.",
        "how often is {s} backed up?",
        "how frequently do we take snapshots of {a}?|when does {a} get backed up?",
        lambda r, d, s: r.choice(["every night at 02:00", "every hour", "every 6 hours", "weekly on Sundays"]),
    ),
    _a(
        "ratelimit",
        "system",
        "The rate limit on {s} is {v} requests per minute.|{S} throttles callers above {v} requests a minute.",
        "what is the rate limit for {s}?",
        "how many calls per minute am I allowed to make to {a}?|at what request volume does {a} start rejecting me?",
        lambda r, d, s: str(r.choice([60, 100, 120, 300, 600, 1000, 5000])),
    ),
    _a(
        "deadline",
        "process",
        "The deadline for {s} is {v}.|{S} must be done by {v}.",
        "when is the {s} deadline?",
        "by when do I need to finish {a}?|what's the cutoff date for {a}?",
        lambda r, d, s: r.choice(
            [f"the {r.randrange(1, 28)}th of each month", f"{r.choice(WEEKDAYS)} at noon", "end of quarter"]
        ),
    ),
    _a(
        "contact",
        "process",
        "{v} is the contact for {s}.|Questions about {s} go to {v}.",
        "who handles {s}?",
        "who should I talk to about {a}?|who's the point person for {a}?",
        lambda r, d, s: _person(r),
    ),
    _a(
        "location",
        "process",
        "{S} takes place in {v}.|{S} is held in {v}.",
        "where is {s}?",
        "which room do we gather in for {a}?|where do we meet up for {a}?",
        lambda r, d, s: r.choice(PLACES),
    ),
    _a(
        "approver",
        "process",
        "{S} must be approved by {v}.|{v} signs off on {s}.",
        "who approves {s}?",
        "whose sign-off do I need for {a}?|who has to okay {a}?",
        lambda r, d, s: r.choice([_person(r), "your manager", f"the head of {r.choice(TEAMS)}"]),
    ),
    _a(
        "form",
        "process",
        "Submit {s} through {v}.|{S} are filed at {v}.",
        "where do I submit {s}?",
        "what's the link for filing {a}?|which form do I fill in for {a}?",
        lambda r, d, s: f"https://forms.{d}.com/{s}",
    ),
    _a(
        "costcenter",
        "process",
        "Charge {s} to cost center {v}.|{S} are billed to cost center {v}.",
        "what cost center is {s}?",
        "which budget code do I put on {a}?|what account should {a} be billed to?",
        lambda r, d, s: f"CC-{r.randrange(1000, 9999)}",
    ),
    _a(
        "frequency",
        "process",
        "{S} happens {v}.|We run {s} {v}.",
        "how often is {s}?",
        "how regularly do we do {a}?|what's the cadence of {a}?",
        lambda r, d, s: r.choice(["every two weeks", "once a quarter", "monthly", "twice a year", "every Friday"]),
    ),
    _a(
        "channel",
        "process",
        "Updates about {s} are posted in {v}.|{S} news goes to {v}.",
        "where are {s} updates posted?",
        "which slack channel covers {a}?|where can I follow what's happening with {a}?",
        lambda r, d, s: f"#{s}",
    ),
]

# How askers open and close a question; none of it is stored anywhere.
OPENERS = ["", "", "quick q: ", "hey team, ", "sorry to bother, ", "random one: ", "Ember, ", "hi! "]
CLOSERS = ["", "", "", " thanks!", " anyone?", " 🙏", " cheers"]
# A held-out question sharing more of its topic words with the stored memory than this is redrawn.
MAX_OVERLAP = 0.5

# Chatter about a subject: close in meaning, never the answer (turns that were worth remembering).
CHATTER = {
    "system": [
        ("is {a} down for anyone else?", "Works for me, try reconnecting."),
        ("can someone restart {a}?", "Done, it should be back in a minute."),
        ("why is {a} so slow today?", "There's a known issue, the {t} team is on it."),
        ("does {a} support two-factor login?", "Not yet, it is on the roadmap."),
        ("who broke {a}?", "Nobody, it was a scheduled restart."),
        ("how do I get logs out of {a}?", "Use the log viewer and filter by service name."),
        ("is there a sandbox version of {a} I can play with?", "Ask {p}, they set one up last month."),
        ("are we replacing {a} next year?", "Maybe, it's being discussed in planning."),
        (None, "{S} was flaky this morning, details are in the incident channel."),
        (None, "Reminder: changes to {s} need a review from two people."),
        (None, "{p} is writing a proposal to simplify {s}."),
        (None, "The {t} team will demo improvements to {s} at the next all-hands."),
    ],
    "process": [
        ("is {a} happening this year?", "Yes, details are coming soon."),
        ("can I skip {a} this time?", "Only with your manager's OK."),
        ("any tips for {a}?", "Start early and ask {p} if you get stuck."),
        ("did anything change about {a}?", "A little, the {t} team will send a summary."),
        ("how long does {a} usually take?", "About a week end to end."),
        (None, "{S} got rescheduled, watch for the calendar update."),
        (None, "{p} is collecting feedback about {s}."),
        (None, "Thanks everyone who helped with {s} last time!"),
    ],
}
PROJECTS = [
    "falcon",
    "orion",
    "tundra",
    "mosaic",
    "quartz",
    "nimbus",
    "harbor",
    "lantern",
    "cobalt",
    "sierra",
    "ember-ui",
    "pinecone",
    "atlas",
]
TOPICS = [
    "rust",
    "kubernetes",
    "public speaking",
    "sql tuning",
    "design systems",
    "accessibility",
    "pricing",
    "python typing",
]
FOODS = ["tacos", "pad thai", "pizza", "sushi", "falafel wraps", "ramen", "salad bowls", "curry"]
GENERIC = [
    ("can someone review my PR #{n} for {j}?", "Sure, I'll take a look after lunch."),
    ("any update on {J}-{n}?", "Blocked on design review, should move {w}."),
    ("is {p} out today?", "Yes, back on {w}."),
    ("what time is the {j} standup today?", "It moved to {h}:30."),
    ("what's for lunch on {w}?", "{f}, I think."),
    ("how do I rename a branch in git?", "git branch -m old-name new-name, then push with -u."),
    ("did the {j} release go out?", "Yes, version {n} shipped this morning."),
    ("who is presenting at the {x} lunch and learn?", "{p}, on {w} at {h}:00."),
    ("can I borrow a HDMI adapter from someone on floor {d}?", "There are spares in the cupboard."),
    ("is the {j} retro still on?", "Moved to {w}, same time."),
    (None, "{p} is out of office until {w}, ping {q} instead."),
    (None, "The {j} demo moved to {w} at {h}:00."),
    (None, "Lunch & learn on {x} this {w} at {h}:00, bring questions."),
    (None, "Ticket {J}-{n} is fixed in the latest {j} build."),
    (None, "Welcome {p} who joins the {t} team this week!"),
    (None, "{p} and {q} are pairing on {j} all afternoon."),
]


def slug(name: str) -> str:
    words = [word for word in name.lower().replace("-", " ").split() if word not in ("the", "our")]
    return "-".join(words)


def sentence(template: str, subject: Subject, value: str = "") -> str:
    filled = template.format(s=subject.name, S=subject.name[0].upper() + subject.name[1:], v=value)
    filled = filled.replace("The the ", "The ").replace("the the ", "the ")  # "The {s} host" with s = "the VPN"
    return filled[0].upper() + filled[1:]


def content_words(phrase: str) -> set[str]:
    return {
        word for word in "".join(c if c.isalnum() else " " for c in phrase.lower()).split() if word not in STOPWORDS
    }


# --- what gets stored ----------------------------------------------------------------------------


@dataclass
class Workspace:
    team_id: str
    domain: str
    share: float
    public: list[str] = field(default_factory=list)
    private: list[str] = field(default_factory=list)
    dms: list[str] = field(default_factory=list)

    def channel(self, rng: random.Random) -> tuple[str, str]:
        """A random place to have said something: mostly public channels, some private, some DMs."""
        roll = rng.random()
        if roll < 0.70:
            return rng.choice(self.public), "channel"
        if roll < 0.85:
            return rng.choice(self.private), "group"
        return rng.choice(self.dms), "im"


@dataclass
class Question:
    """A held-out question with its one right memory."""

    audience: Audience
    text: str
    stored: str  # the right memory's question + text, to show how far the paraphrase is from it
    target_row: int  # index into World.real
    memory_id: int = -1  # known once stored


@dataclass
class World:
    workspaces: list[Workspace]
    real: list[NewMemory]  # targets and near neighbours: each embedded on its own
    questions: list[Question]
    pool: list[NewMemory]  # distinct generic texts whose vectors the filler reuses


def build_world(rng: random.Random, *, questions: int, pool_size: int) -> World:
    workspaces = [_workspace(team, domain, share) for team, domain, share in WORKSPACES]
    real: list[NewMemory] = []
    held_out: list[Question] = []
    for ws in workspaces:
        _topics(rng, ws, real, held_out)
        _chatter(rng, ws, real)
    rng.shuffle(held_out)
    chosen = _stratified(held_out, questions)
    return World(workspaces, real, chosen, _generic_pool(rng, workspaces, pool_size))


def _workspace(team: str, domain: str, share: float) -> Workspace:
    code = team[1:3]
    return Workspace(
        team,
        domain,
        share,
        public=[f"C{code}{i:04d}" for i in range(PUBLIC_CHANNELS)],
        private=[f"G{code}{i:04d}" for i in range(PRIVATE_CHANNELS)],
        dms=[f"D{code}{i:04d}" for i in range(DMS)],
    )


def _topics(rng: random.Random, ws: Workspace, real: list[NewMemory], held_out: list[Question]) -> None:
    """One answer memory per (subject, attribute) in this workspace, and the questions it answers.
    Half the DMs hold stale private copies; askers only ever ask from the other half."""
    stale_dms, asking_dms = ws.dms[: DMS // 2], ws.dms[DMS // 2 :]
    for subject in SUBJECTS:
        for attribute in (a for a in ATTRIBUTES if a.category == subject.category):
            value = attribute.value(rng, ws.domain, slug(subject.name))
            home, home_type, audience = _home(rng, ws, asking_dms)
            memory = _answer_memory(rng, ws, subject, attribute, value, home, home_type)
            held_out.append(_question(rng, subject, attribute, memory, audience, len(real)))
            real.append(memory)
            if home_type == "channel" and rng.random() < 0.2:
                stale = attribute.value(rng, ws.domain, slug(subject.name) + "-old")
                text = sentence(rng.choice(attribute.statements), subject, stale)
                real.append(_memory(ws, rng.choice(stale_dms), "im", "fact", f"I think {text[0].lower()}{text[1:]}"))


def _home(rng: random.Random, ws: Workspace, asking_dms: list[str]) -> tuple[str, str, Audience]:
    """Where the answer was said, and where the held-out question is asked from (a place that may see it)."""
    roll = rng.random()
    if roll < 0.80:
        home = rng.choice(ws.public)
        elsewhere = [c for c in ws.public if c != home]
        asked_in = rng.choice(elsewhere) if rng.random() < 0.8 else rng.choice(asking_dms)
        return home, "channel", Audience(ws.team_id, asked_in)
    if roll < 0.90:
        home = rng.choice(ws.private)
        return home, "group", Audience(ws.team_id, home)
    home = rng.choice(asking_dms)
    return home, "im", Audience(ws.team_id, home)


def _answer_memory(
    rng: random.Random, ws: Workspace, subject: Subject, attribute: Attribute, value: str, home: str, home_type: str
) -> NewMemory:
    statement = sentence(rng.choice(attribute.statements), subject, value)
    asked = sentence(rng.choice(attribute.asked), subject)
    roll = rng.random()
    if roll < 0.40:
        return _memory(ws, home, home_type, "fact", statement)
    if roll < 0.75:
        return _memory(ws, home, home_type, "correction", f"No, {statement[0].lower()}{statement[1:]}", asked)
    return _memory(ws, home, home_type, "turn", statement, asked)


def _question(
    rng: random.Random, subject: Subject, attribute: Attribute, memory: NewMemory, audience: Audience, row: int
) -> Question:
    """A rewording of the question this memory answers: a phrasing from a bank that is never stored,
    usually another name for the subject, and the asker's own opener and closer. One that shares more
    than MAX_OVERLAP of its topic words with the stored memory is redrawn."""
    stored = embedding_text(memory.text, memory.question)
    stored_words = content_words(stored)
    phrase = ""
    for _ in range(20):
        name = rng.choice(subject.aliases) if subject.aliases and rng.random() < 0.75 else subject.name
        body = rng.choice(attribute.paraphrases).format(a=name)
        phrase = f"{rng.choice(OPENERS)}{body}{rng.choice(CLOSERS)}"
        words = content_words(phrase)
        if len(words & stored_words) <= MAX_OVERLAP * len(words):
            break
    return Question(audience, phrase, stored, target_row=row)


def _chatter(rng: random.Random, ws: Workspace, real: list[NewMemory]) -> None:
    for subject in SUBJECTS:
        for question, answer in CHATTER[subject.category]:
            name = rng.choice([subject.name, *subject.aliases])
            fill = {"a": name, "s": subject.name, "S": subject.name[0].upper() + subject.name[1:]}
            fill |= {"t": rng.choice(TEAMS), "p": _person(rng)}
            channel, channel_type = ws.channel(rng)
            kind = "turn" if question else "fact"
            asked = question.format(**fill) if question else None
            real.append(_memory(ws, channel, channel_type, kind, answer.format(**fill), asked))


def _generic_pool(rng: random.Random, workspaces: list[Workspace], size: int) -> list[NewMemory]:
    """Distinct everyday texts (reviews, lunches, stand-ups...). They never mention the subjects: each is
    stored many times over, and a block of identical vectors next to a question is not what a real
    history holds (the subjects' own chatter is embedded one by one, with the answers)."""
    seen: set[str] = set()
    pool: list[NewMemory] = []
    ws = workspaces[0]  # placement is decided per filler row; only the text and kind matter here
    while len(pool) < size:
        question, answer = rng.choice(GENERIC)
        fill = {"n": str(rng.randrange(100, 9999)), "j": rng.choice(PROJECTS), "w": rng.choice(WEEKDAYS)}
        fill |= {"p": _person(rng), "q": _person(rng), "h": str(rng.randrange(9, 18)), "f": rng.choice(FOODS)}
        fill |= {"x": rng.choice(TOPICS), "d": str(rng.randrange(1, 9)), "t": rng.choice(TEAMS)}
        fill["J"] = fill["j"].upper()[:4]
        asked = question.format(**fill) if question else None
        said = answer.format(**fill)
        if embedding_text(said, asked) in seen:
            continue
        seen.add(embedding_text(said, asked))
        kind = "turn" if question else rng.choice(["fact", "fact", "correction"])
        pool.append(_memory(ws, ws.public[0], "channel", kind, said, asked))
    return pool


def _memory(
    ws: Workspace, channel: str, channel_type: str, kind: str, said: str, question: str | None = None
) -> NewMemory:
    return NewMemory(ws.team_id, channel, channel_type, "U" + channel[1:], kind, said, question)


def _stratified(held_out: list[Question], count: int) -> list[Question]:
    """Questions from each workspace in proportion to its share of the history (the big one is the
    hard one to search); public, private and DM answers come in the proportions they were made."""
    chosen: list[Question] = []
    for team, _, share in WORKSPACES:
        mine = [q for q in held_out if q.audience.workspace_id == team]
        chosen += mine[: max(1, round(count * share))]
    return chosen[:count]


# --- loading -------------------------------------------------------------------------------------

BATCH = 5_000
PER_TRANSACTION = 50_000


def filler_batches(rng: random.Random, world: World, count: int) -> Iterator[tuple[list[NewMemory], list[int]]]:
    """Batches of filler memories placed across the workspaces, each with the pool row it reuses."""
    shares = [ws.share for ws in world.workspaces]
    left = count
    while left > 0:
        size = min(BATCH, left)
        picks = rng.choices(range(len(world.pool)), k=size)
        places = rng.choices(world.workspaces, weights=shares, k=size)
        rows = []
        for pick, ws in zip(picks, places, strict=True):
            channel, channel_type = ws.channel(rng)
            item = world.pool[pick]
            thread = f"{1_700_000_000 + rng.randrange(10**7)}.{rng.randrange(10**6):06d}"
            rows.append(
                NewMemory(
                    ws.team_id, channel, channel_type, "U" + channel[1:], item.kind, item.text, item.question, thread
                )
            )
        yield rows, picks
        left -= size


def mixed_batches(rng: random.Random, world: World, total: int) -> Iterator[tuple[list[NewMemory], list[int]]]:
    """The real memories spread evenly through the filler. A real memory's pick is ~row (negative)."""
    order = list(range(len(world.real)))
    rng.shuffle(order)
    filler = max(0, total - len(order))
    per_batch = max(1, -(-len(order) * BATCH // max(1, filler + len(order))))
    position = 0
    for rows, picks in filler_batches(rng, world, filler):
        take = order[position : position + per_batch]
        position += len(take)
        yield rows + [world.real[i] for i in take], picks + [~i for i in take]
    while position < len(order):
        take = order[position : position + BATCH]
        position += len(take)
        yield [world.real[i] for i in take], [~i for i in take]


def load(db: Database, embedder: Embedder, world: World, *, total: int, real: np.ndarray, pool: np.ndarray) -> float:
    """Store every real memory and filler up to `total`, in batched transactions; returns the seconds spent."""
    rng = random.Random(7)
    by_row = {question.target_row: question for question in world.questions}
    stored, started, reported = 0, time.perf_counter(), 0.0
    batches = mixed_batches(rng, world, total)
    while stored < total and (chunk := _take(batches, PER_TRANSACTION // BATCH)):
        with db.session() as session:
            for rows, picks in chunk:
                vectors = np.stack([real[~pick] if pick < 0 else pool[pick] for pick in picks])
                ids = add_memories(session, embedder=embedder, items=rows, vectors=vectors)
                for memory_id, pick in zip(ids, picks, strict=True):
                    if pick < 0 and ~pick in by_row:
                        by_row[~pick].memory_id = memory_id
                stored += len(rows)
        elapsed = time.perf_counter() - started
        if elapsed - reported > 10 or stored >= total:
            reported = elapsed
            print(f"  stored {stored:>9,} / {total:,}   {stored / elapsed:>8,.0f} items/s", flush=True)
    return time.perf_counter() - started


def _take(batches: Iterator[tuple[list[NewMemory], list[int]]], count: int) -> list[tuple[list[NewMemory], list[int]]]:
    out = []
    for batch in batches:
        out.append(batch)
        if len(out) == count:
            break
    return out


def embed_all(
    embedder: Embedder, items: Sequence[NewMemory], label: str, cache: Path | None
) -> tuple[np.ndarray, float]:
    """Real embeddings of these memories, made as db.memory makes them (`embedding_texts`, combined),
    with progress; returns them and memories per second (NaN when every text came from the cache,
    which re-runs use to skip the slowest part of the setup)."""
    groups = [embedding_texts(item.text, item.question) for item in items]
    known = _load_cache(cache, embedder.name)
    missing = list(dict.fromkeys(t for group in groups for t in group if t not in known))
    rate = float("nan")
    if missing:
        vectors, texts_per_second = _embed(embedder, missing, label)
        rate = texts_per_second * len(items) / max(1, sum(len(group) for group in groups))
        known.update(zip(missing, vectors, strict=True))
        _save_cache(cache, embedder.name, known)
    else:
        print(f"  {len(items):,} {label}: embeddings from the cache", flush=True)
    if not groups:
        return np.empty((0, embedder.dim), np.float32), rate
    parts = np.stack([known[t] for group in groups for t in group])
    return combine_vectors(parts, [len(group) for group in groups]), rate


def _cache_file(cache: Path, model: str) -> Path:
    return cache / f"embeddings-{hashlib.sha256(model.encode()).hexdigest()[:12]}.npz"


def _load_cache(cache: Path | None, model: str) -> dict[str, np.ndarray]:
    if cache is None or not _cache_file(cache, model).is_file():
        return {}
    with np.load(_cache_file(cache, model)) as data:
        return dict(zip(data["texts"].tolist(), data["vectors"], strict=True))


def _save_cache(cache: Path | None, model: str, known: dict[str, np.ndarray]) -> None:
    if cache is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(_cache_file(cache, model), texts=np.array(list(known)), vectors=np.stack(list(known.values())))


def _embed(embedder: Embedder, texts: Sequence[str], label: str) -> tuple[np.ndarray, float]:
    out = np.empty((len(texts), embedder.dim), np.float32)
    started, step = time.perf_counter(), 4_096
    for start in range(0, len(texts), step):
        out[start : start + step] = embedder.embed(texts[start : start + step], batch_size=128)
        done = min(start + step, len(texts))
        print(
            f"  embedded {done:>7,} / {len(texts):,} {label}   {done / (time.perf_counter() - started):,.0f} texts/s",
            flush=True,
        )
    return out, len(texts) / max(1e-9, time.perf_counter() - started)


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    with_embedding: list[float] = field(default_factory=list)
    found: int = 0
    asked: int = 0
    leaks: int = 0

    def row(self) -> str:
        search, total = sorted(self.latencies), sorted(self.with_embedding)
        recall = f"{self.found / self.asked:9.3f}" if self.asked else f"{'':9}"
        figures = f"{_pct(search, 50):>8.1f} {_pct(search, 95):>8.1f} {_pct(total, 50):>8.1f} {_pct(total, 95):>8.1f}"
        return f"{self.name:<42} {figures} {recall} {self.leaks:>6}"


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))] * 1000)


# A method answers a question given its embedding (made once per question, timed on its own).
Method = Callable[[Question, np.ndarray], list[int]]


def embed_questions(embedder: Embedder, questions: Sequence[Question]) -> tuple[np.ndarray, list[float]]:
    """Each question's embedding, made one at a time as a live question is, with how long each took."""
    for question in questions[:20]:
        embedder.embed([question.text])  # warm-up
    vectors, seconds = [], []
    for question in questions:
        started = time.perf_counter()
        vectors.append(embedder.embed([question.text])[0])
        seconds.append(time.perf_counter() - started)
    return np.stack(vectors), seconds


def measure(
    db: Database, name: str, method: Method, questions: Sequence[Question], vectors: np.ndarray, embed_s: list[float]
) -> Result:
    """`embed_s` is added to each question's search time for the end-to-end figure (None: keywords only)."""
    result = Result(name)
    for question, vector in zip(questions[:20], vectors, strict=False):
        method(question, vector)  # warm-up
    for question, vector, embedding in zip(questions, vectors, embed_s, strict=True):
        started = time.perf_counter()
        ids = method(question, vector)[:5]
        elapsed = time.perf_counter() - started
        result.latencies.append(elapsed)
        result.with_embedding.append(elapsed + embedding)
        result.asked += 1
        result.found += question.memory_id in ids
        result.leaks += _leaks(db, question.audience, ids)
    return result


def _leaks(db: Database, audience: Audience, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    with db.session() as session:
        rows = session.scalars(select(Memory).where(Memory.id.in_(ids))).all()
        return sum(not can_see(audience, row) for row in rows)


class BruteForce:
    """Exact cosine over every stored vector the asker may see: one matrix product per question."""

    def __init__(self, db: Database, model: str) -> None:
        ids, teams, channels, public, blobs = [], [], [], [], []
        with db.session() as session:
            stmt = select(Memory.id, Memory.workspace_id, Memory.channel_id, Memory.channel_type, Memory.embedding)
            for part in session.execute(
                stmt.where(Memory.embedding_model == model).execution_options(yield_per=50_000)
            ).partitions():
                for memory_id, team, channel, channel_type, blob in part:
                    ids.append(memory_id)
                    teams.append(team)
                    channels.append(channel)
                    public.append(is_public(channel_type))
                    blobs.append(blob or b"")
        self.ids = np.asarray(ids, np.int64)
        self.teams = np.asarray(teams)
        self.channels = np.asarray(channels)
        self.public = np.asarray(public)
        self.matrix = np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), -1)

    def search(self, audience: Audience, vector: np.ndarray, k: int) -> list[int]:
        visible = (self.teams == audience.workspace_id) & (self.public | (self.channels == audience.channel_id))
        sims = np.where(visible, self.matrix @ vector, -np.inf)
        top = np.argpartition(-sims, k)[:k]
        return [int(self.ids[i]) for i in top[np.argsort(-sims[top])] if np.isfinite(sims[i])]


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=1_000_000, help="memories to store (default 1,000,000)")
    parser.add_argument("--questions", type=int, default=1_000, help="held-out paraphrased questions")
    parser.add_argument("--pool", type=int, default=0, help="distinct filler texts to embed (default N/50, 2k-20k)")
    parser.add_argument("--keep", type=Path, help="keep the database in this directory instead of a temp one")
    parser.add_argument("--cache", type=Path, help="reuse (or save) the embeddings of the generated texts here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="ember-bench-"))
    try:
        pool = args.pool or min(20_000, max(2_000, args.turns // 50))
        run(args.turns, args.questions, pool, workdir, args.cache)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(total: int, question_count: int, pool_size: int, workdir: Path, cache: Path | None) -> None:
    wall = time.perf_counter()
    rng = random.Random(2026)
    world = build_world(rng, questions=question_count, pool_size=pool_size)
    embedder = Embedder.load()
    print(
        f"world: {len(WORKSPACES)} workspaces, {len(world.real):,} answers and near neighbours, "
        f"{len(world.questions):,} held-out questions, {len(world.pool):,} distinct filler texts",
        flush=True,
    )
    _show_paraphrases(world)
    real, embed_rate = embed_all(embedder, world.real, "answers and near neighbours", cache)
    pool, _ = embed_all(embedder, world.pool, "filler texts", cache)
    if math.isnan(embed_rate):  # cached: time a sample, so the table still says how fast memories are embedded
        sample = world.real[:1024]
        started = time.perf_counter()
        memory_vectors(embedder, [(m.text, m.question) for m in sample])
        embed_rate = len(sample) / (time.perf_counter() - started)
    db = Database(f"sqlite:///{workdir / 'ember.db'}")
    db.upgrade()
    print(f"storing {total:,} memories into {workdir / 'ember.db'}", flush=True)
    load_s = load(db, embedder, world, total=total, real=real, pool=pool)
    with db.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    size = sum(f.stat().st_size for f in workdir.glob("ember.db*"))
    started = time.perf_counter()
    with db.session() as session:
        index = VectorIndex.build(session, model=embedder.name, progress=_progress("indexed"))
    index_s = time.perf_counter() - started
    print(f"vector index: {len(index):,} vectors in {index_s:.1f} s", flush=True)
    results = _compare(db, embedder, index, world.questions)
    _report(total, world, embed_rate, load_s, size, index, index_s, results, time.perf_counter() - wall)


def _progress(label: str) -> Callable[[int], None]:
    def report(count: int) -> None:
        if count % 200_000 < 50_000:
            print(f"  {label} {count:>9,}", flush=True)

    return report


def _compare(db: Database, embedder: Embedder, index: VectorIndex, questions: Sequence[Question]) -> list[Result]:
    def hybrid(q: Question, vector: np.ndarray) -> list[int]:
        with db.session() as session:
            hits = search_memories(
                session, audience=q.audience, query=q.text, embedder=embedder, k=5, index=index, query_vector=vector
            )
            return [hit.memory_id for hit in hits]

    def index_only(q: Question, vector: np.ndarray) -> list[int]:
        with db.session() as session:
            found = vector_search(session, audience=q.audience, vector=vector, model=embedder.name, k=5, index=index)
            return [memory_id for memory_id, _ in found]

    def keywords(q: Question, vector: np.ndarray) -> list[int]:
        with db.session() as session:
            return keyword_search(session, audience=q.audience, query=q.text, k=5)

    print("loading every vector for the brute-force baseline", flush=True)
    brute = BruteForce(db, embedder.name)

    def brute_force(q: Question, vector: np.ndarray) -> list[int]:
        return brute.search(q.audience, vector, 5)

    print(f"embedding {len(questions):,} questions one at a time", flush=True)
    vectors, embed_s = embed_questions(embedder, questions)
    no_embedding = [0.0] * len(questions)
    methods = [
        ("(a) Ember hybrid: FTS5 + vector index, RRF", hybrid, embed_s),
        ("    Ember vector index alone", index_only, embed_s),
        ("(b) FTS5 keyword search alone (bm25)", keywords, no_embedding),
        ("(b) brute-force numpy cosine, exact", brute_force, embed_s),
    ]
    results = []
    for name, method, embedding in methods:
        print(f"asking {len(questions):,} questions: {name.strip()}", flush=True)
        results.append(measure(db, name, method, questions, vectors, embedding))
    results.append(Result("    (the query embedding alone)", [0.0] * len(embed_s), embed_s))
    return results


def _show_paraphrases(world: World) -> None:
    overlaps = [
        len(content_words(q.text) & content_words(q.stored)) / max(1, len(content_words(q.text)))
        for q in world.questions
    ]
    print(
        f"paraphrases share {statistics.mean(overlaps):.0%} of their content words with the stored memory (mean); e.g.:"
    )
    for question in world.questions[:4]:
        print(f"  stored: {question.stored!r}\n   asked: {question.text!r}")


def _report(
    total: int,
    world: World,
    embed_rate: float,
    load_s: float,
    size: int,
    index: VectorIndex,
    index_s: float,
    results: Sequence[Result],
    wall_s: float,
) -> None:
    filler = max(0, total - len(world.real))
    kinds = ", ".join(KINDS)
    print()
    print(
        f"Ember memory retrieval: {os.cpu_count()} CPU cores, model all-MiniLM-L6-v2 (384-d, float32),"
        f" N = {total:,} memories"
    )
    print(f"  history: {len(WORKSPACES)} workspaces; public/private channels, DMs, threads; kinds {kinds}")
    print(f"  {len(world.real):,} answers and near neighbours embedded one by one; {filler:,} filler rows reuse the")
    print(
        f"  vectors of {len(world.pool):,} distinct embedded filler texts;"
        f" {len(world.questions):,} held-out paraphrased questions"
    )
    print(f"  insert: {total / load_s:,.0f} items/s (add_memories, batches of {BATCH:,}, vectors precomputed);")
    print(f"  embedding new memories: {embed_rate:,.0f} memories/s; database size {size / 2**30:.2f} GiB;")
    print(
        f"  vector index built in {index_s:.1f} s ({len(index):,} vectors, {len(index.partition_sizes())} partitions)"
    )
    print()
    print(f"{'':<42} {'search only (ms)':>17} {'+ query embed (ms)':>17}")
    print(f"{'method':<42} {'p50':>8} {'p95':>8} {'p50':>8} {'p95':>8} {'recall@5':>9} {'leaks':>6}")
    for result in results:
        print(result.row())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"(latency per question, one database session each; load average {load}; run took {wall_s / 60:.1f} min)")


if __name__ == "__main__":
    main()
