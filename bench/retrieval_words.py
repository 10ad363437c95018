"""The word tables of the retrieval benchmark's synthetic history (bench/retrieval.py): people, teams,
subjects and the ways they are named, what is worth remembering about them and how it is asked,
and the chatter around it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from db.search import STOPWORDS

# (workspace id, domain, share of the stored memories): one big workspace, as in a real install.
WORKSPACES = [("T01ACME", "acme", 0.60), ("T02GLOBEX", "globex", 0.22), ("T03INITECH", "initech", 0.12)]
WORKSPACES += [("T04HOOLI", "hooli", 0.06)]

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


def person(rng: random.Random) -> str:
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
        lambda r, d, s: person(r),
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
        lambda r, d, s: r.choice([f"the {r.choice(TEAMS)} team", person(r), f"the #{s}-access channel"]),
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
        lambda r, d, s: person(r),
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
        lambda r, d, s: r.choice([person(r), "your manager", f"the head of {r.choice(TEAMS)}"]),
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
