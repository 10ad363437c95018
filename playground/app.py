"""`Playground`: the people of a local Slack workspace and what they do (delivery: playground.delivery).

A page (playground.web) shows one person's view of the workspace and turns their typing and
clicks into calls here. Each becomes what Slack would send the app: Events API envelopes, signed and
delivered from a background queue with Slack's retries; slash commands and interactions sent at once,
because the app's HTTP answer decides what the person sees (a command's ephemeral reply, a modal's
errors). The app answers through `slack`, the Web API server, as it would answer Slack; nothing it
receives tells it that it is not talking to Slack.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests

from . import response_urls
from .client import SlackClient
from .delivery import TIMEOUT, Delivery, Job
from .events import element_action
from .methods import SlackError
from .methods.chat import permalink
from .methods.misc import remove_reaction
from .methods.views import PUSH_LIMIT, check_view, find_view, show
from .server import LocalSlack
from .store import Autosave, WorkspaceStore
from .workspace import Channel, Message, User, thread_key

log = logging.getLogger(__name__)

Result = dict[str, Any]

STORE_FILE = "playground.db"
TEAM_NAME = "Ember Playground"
# Slack refuses longer messages (msg_too_long).
MAX_MESSAGE_CHARS = 40_000
COMMANDS = ("/ember",)
AGENT_CHATS = 20  # the conversations Ember's pane lists
TITLE_CHARS = 60
SLACKBOT = {"id": "USLACKBOT", "name": "slackbot", "real_name": "Slackbot", "is_bot": True}
PEOPLE = (("ana", "Ana Lima"), ("ben", "Ben Okafor"), ("cleo", "Cleo Park"))
# The message.* subscription that delivers a conversation's messages to the app.
_MESSAGE_EVENT = {"public": "message.channels", "private": "message.groups", "im": "message.im", "mpim": "message.mpim"}
_KIND_ORDER = {"public": 0, "private": 1, "mpim": 2, "im": 3}
# "@name" as typed on the page; not inside words, e-mail addresses or "<@U...>".
_MENTION = re.compile(r"(?<![\w<@.])@([A-Za-z0-9][\w-]*(?:\.[\w-]+)*)")
_BROADCASTS = {"here": "<!here>", "channel": "<!channel>", "everyone": "<!everyone>"}
_TOKEN = re.compile(r"<@([A-Z0-9]+)>|<!(here|channel|everyone)>")
_COMMAND = re.compile(r"(/\S*)\s*(.*)", re.DOTALL)
_LINK = re.compile(r"<(?:https?|mailto):[^>|]*\|([^>]*)>")  # <url|label>
_TOKEN_SPAN = re.compile(r"<[^>]*>")
_REACTION = re.compile(r"[a-z0-9_+'-]+(::skin-tone-[2-6])?")


def _error(code: str, message: str, **extra: Any) -> Result:
    return {"ok": False, "error": code, "message": message, **extra}


class Playground:
    """A Slack workspace with three people in it, for trying Ember without Slack."""

    def __init__(
        self,
        data_dir: Path | None,
        *,
        signing_secret: str,
        events_url: str = "",
        status: Callable[[], dict[str, Any]] | None = None,
        train: Callable[[], dict[str, Any]] | None = None,
        bot_events: Iterable[str] = ("app_mention", "message.im", "reaction_added", "reaction_removed"),
        shortcuts: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.data_dir = data_dir
        self.signing_secret = signing_secret
        self.events_url = events_url  # Ember's /slack/events; may be set any time before the first action
        self.bot_events = frozenset(bot_events)
        self.commands = COMMANDS
        # The app's message shortcuts, (callback_id, name), as a message's menu lists them.
        self.shortcuts = tuple(shortcuts)
        self._status = status
        self._train = train
        self.slack = LocalSlack()
        self.ws = self.slack.workspace
        self.ws.team_name = TEAM_NAME
        self._store: WorkspaceStore | None = None
        self._autosave: Autosave | None = None
        self._delivery: Delivery | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Playground:
        if self._delivery is not None:
            raise RuntimeError("the playground is already running")
        loaded = False
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._store = WorkspaceStore(self.data_dir / STORE_FILE)
            try:
                loaded = self._store.load(self.ws)
            except Exception:
                self._store.close()
                self._store = None
                raise
        if not loaded:
            self._seed()
        if self._store is not None:
            self._store.save(self.ws)
            self._autosave = Autosave(ws=self.ws, store=self._store)
        self.slack.start()
        self._delivery = Delivery(lambda: self.events_url, self.signing_secret)
        return self

    def stop(self) -> None:
        if self._delivery is not None:
            self._delivery.stop()
            self._delivery = None
            self.slack.stop()
        if self._autosave is not None:
            self._autosave.stop()
            self._autosave = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Playground:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seed(self) -> None:
        ws = self.ws
        people = [ws.add_user(name, real_name).id for name, real_name in PEOPLE]
        ana, ben, _ = people
        ws.add_channel("general", "public", members=people)
        ws.add_channel("random", "public", members=people)
        ws.add_channel("leads", "private", members=[ana, ben])
        for person in people:
            ws.add_channel(person, "im", user=person)

    # -- what people see -----------------------------------------------------

    def people(self) -> list[dict[str, Any]]:
        with self.ws.lock:
            return [_person(u) for u in self.ws.users.values() if not u.is_bot]

    def directory(self, user: str) -> Result:
        ws = self.ws
        with ws.lock:
            me = self._person(user)
            if isinstance(me, dict):
                return me
            bot = ws.users[ws.bot_user_id]
            channels = sorted(
                (c for c in ws.channels.values() if self._lists(c, me.id)),
                key=lambda c: (_KIND_ORDER[c.kind], c.name),
            )
            return {
                "ok": True,
                "me": _person(me),
                "people": self.people(),
                "bot": {"id": bot.id, "name": bot.real_name},
                "channels": [self._channel_entry(c) for c in channels],
                "shortcuts": [{"callback_id": c, "name": n} for c, n in self.shortcuts],
            }

    def history(self, user: str, channel: str) -> Result:
        ws = self.ws
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            return {
                "ok": True,
                "channel": self._channel_entry(found),
                "messages": [self._shown(found, m) for m in ws.top_level(found.id)],
                "ephemerals": [
                    self._shown_ephemeral(e)
                    for e in ws.ephemerals
                    if e["channel"] == found.id and e["user"] == user and not e.get("thread_ts")
                ],
                # The agent view's suggested prompts, at the top of the DM with Ember.
                "prompts": copy.deepcopy(ws.prompts.get(found.id, [])) if found.kind == "im" else [],
            }

    def thread(self, user: str, channel: str, ts: str) -> Result:
        ws = self.ws
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            root = ws.thread_root(found.id, str(ts))
            parent = ws.find(found.id, root)
            if parent is None:
                return _error("thread_not_found", "That thread is gone.")
            replies = ws.thread(found.id, root)[1:]
            ephemerals = [
                e
                for e in ws.ephemerals
                if e["channel"] == found.id
                and e["user"] == user
                and e.get("thread_ts")
                and ws.thread_root(found.id, e["thread_ts"]) == root
            ]
            key = thread_key(found.id, root)
            return {
                "ok": True,
                "channel": self._channel_entry(found),
                "parent": self._shown(found, parent),
                "replies": [self._shown(found, m) for m in replies],
                "ephemerals": [self._shown_ephemeral(e) for e in ephemerals],
                # An assistant thread's title and "is thinking…" status (assistant.threads.setTitle/setStatus).
                "title": ws.titles.get(key),
                "status": ws.statuses.get(key),
            }

    def agent(self, user: str) -> Result:
        """Ember opened beside a channel (the agent view's split pane): `user`'s DM with Ember as the
        pane shows it, its suggested prompts and its conversations (each question opens a thread),
        newest first, with the titles Ember gave them."""
        ws = self.ws
        with ws.lock:
            person = self._person(user)
            if isinstance(person, dict):
                return person
            dm = ws.dm_of(person.id)
            if dm is None:
                return _error("channel_not_found", "There is no DM with Ember for you.")
            chats = []
            for message in reversed(ws.top_level(dm.id)[-AGENT_CHATS:]):  # each one starts a conversation
                key = thread_key(dm.id, message["ts"])
                chats.append(
                    {
                        "ts": message["ts"],
                        "title": ws.titles.get(key) or _first_line(str(message.get("text") or "")),
                        "status": ws.statuses.get(key),
                        "reply_count": int(message.get("reply_count") or 0),
                    }
                )
            return {
                "ok": True,
                "dm": dm.id,
                "prompts": copy.deepcopy(ws.prompts.get(dm.id, [])),
                "chats": chats,
            }

    def views(self, user: str) -> list[dict[str, Any]]:
        """`user`'s open modals, the one underneath first (the last is the one on top)."""
        with self.ws.lock:
            return [{"id": v["id"], "view": copy.deepcopy(v)} for v in self.ws.views.get(user, [])]

    def status(self) -> dict[str, Any]:
        return self._call(self._status, {})

    def train(self) -> dict[str, Any]:
        return self._call(self._train, _error("not_available", "Training is not available here."))

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the workspace changes after revision `seen` (or `timeout` seconds); the revision now."""
        return self.ws.wait_for_change(seen, timeout)

    # -- what people do --------------------------------------------------------

    def send(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> Result:
        ws = self.ws
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            if not isinstance(text, str) or not text.strip():
                return _error("no_text", "Write something first.")
            if len(text) > MAX_MESSAGE_CHARS:
                return _error(
                    "msg_too_long",
                    f"That message is {len(text):,} characters long; Slack takes at most {MAX_MESSAGE_CHARS:,}.",
                )
            if found.archived:
                return _error("is_archived", "This channel is archived.")
            if thread_ts and ws.find(found.id, thread_ts) is None:
                return _error("thread_not_found", "That thread is gone.")
            command = _COMMAND.fullmatch(text.strip())
            if command is None and user not in found.members:
                ws.join(found.id, user)  # posting in a public channel joins it, as in Slack
        if command is not None:
            return self._command(user, found, command.group(1), command.group(2), thread_ts)
        return self._post(user, found, text, thread_ts)

    def click(self, user: str, channel: str, message_ts: str, action: dict[str, Any]) -> Result:
        ws = self.ws
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
            return _error("invalid_action", "That is not a button.")
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            message = ws.find(found.id, message_ts)
            ephemeral = message is None
            if message is None:
                mine = (e for e in ws.ephemerals if e["channel"] == found.id and e["user"] == user)
                message = next((e for e in mine if e["ts"] == message_ts), None)
            if message is None:
                return _error("message_not_found", "That message is gone.")
            value = action.get("value")
            fields = element_action(
                message,
                action["action_id"],
                value=value if isinstance(value, str) else None,
                block_id=action.get("block_id") or None,
            )
            if fields is None:
                return _error("action_not_found", "That button is no longer on the message.")
            message = copy.deepcopy(message)
        clicked = message_ts if ephemeral else None
        url = response_urls.mint(ws, self.slack.base_url, found.id, user, ephemeral_ts=clicked)
        payload = self.slack.events.block_action(found, user, message, fields, url, ephemeral=ephemeral)
        answer = self._interact(lambda client: client.send_interaction(payload))
        return answer if isinstance(answer, dict) else {"ok": True}

    def shortcut(self, user: str, channel: str, message_ts: str, callback_id: str) -> Result:
        """Run the app's message shortcut `callback_id` (e.g. "Summarize this thread") on a message."""
        ws = self.ws
        if callback_id not in dict(self.shortcuts):
            return _error("shortcut_not_found", "The app has no such shortcut.")
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            message = ws.find(found.id, message_ts)
            if message is None:
                return _error("message_not_found", "That message is gone.")
            message = copy.deepcopy(message)
        url = response_urls.mint(ws, self.slack.base_url, found.id, user)
        payload = self.slack.events.message_shortcut(found, user, message, callback_id, url)
        answer = self._interact(lambda client: client.send_interaction(payload))
        return answer if isinstance(answer, dict) else {"ok": True}

    def opened(self, user: str, channel: str) -> Result:
        """`user` looks at `channel` now. With Ember open beside Slack (the agent view), Slack tells the app
        what they look at (app_context_changed); opening the DM with Ember is opening its messages tab."""
        with self.ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
        if found.kind == "im":
            self._queue("event", self.slack.app_home_opened(user, tab="messages"))
        else:
            self._queue("event", self.slack.app_context_changed(user, found.id))
        return {"ok": True}

    def prompt(self, user: str, channel: str, message: str) -> Result:
        """`user` picks a suggested prompt in their DM with Ember: Slack posts its message as the app
        wrote it (a channel link stays a link)."""
        with self.ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            offered = [p["message"] for p in self.ws.prompts.get(found.id, [])]
        if found.kind != "im" or message not in offered:
            return _error("prompt_not_found", "That prompt is no longer offered.")
        return self._post(user, found, message, None, as_given=True)

    def open_home(self, user: str) -> Result:
        """`user` opens Ember's Home tab: Slack tells the app (app_home_opened), which publishes it."""
        person = self._person(user)
        if isinstance(person, dict):
            return person
        self._queue("event", self.slack.app_home_opened(person.id))
        return {"ok": True}

    def home(self, user: str) -> Result:
        """`user`'s Home tab as Ember last published it (None until it has)."""
        person = self._person(user)
        if isinstance(person, dict):
            return person
        with self.ws.lock:
            view = self.ws.homes.get(person.id)
            return {"ok": True, "view": copy.deepcopy(view) if view is not None else None}

    def home_click(self, user: str, action: dict[str, Any]) -> Result:
        """A click on a button of `user`'s Home tab (after any confirmation the page asked for)."""
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
            return _error("invalid_action", "That is not a button.")
        person = self._person(user)
        if isinstance(person, dict):
            return person
        value = action.get("value")
        try:
            # Several buttons may share an action id (one a digest); their value tells them apart.
            payload = self.slack.home_action(
                person.id, action["action_id"], value if isinstance(value, str) and value else None
            )
        except ValueError:
            return _error("action_not_found", "That button is no longer on the Home tab.")
        answer = self._interact(lambda client: client.send_interaction(payload))
        return answer if isinstance(answer, dict) else {"ok": True}

    def submit(self, user: str, view_id: str, values: dict[str, Any]) -> Result:
        ws = self.ws
        with ws.lock:
            view = find_view(ws.views, user, view_id)
            if view is None:
                return _error("view_not_found", "That form is closed.")
            state = _state_values(view, values)
            if state is None:
                return _error("invalid_values", "The form's values are not in Slack's shape.")
            view = copy.deepcopy(view)
        payload = self.slack.events.view_submission(user, view, state)
        answer = self._interact(lambda client: client.send_interaction(payload))
        if isinstance(answer, dict):
            return answer
        body = _answer_body(answer)
        return self._after_submission(user, view_id, state, body)

    def close_view(self, user: str, view_id: str) -> Result:
        ws = self.ws
        with ws.lock:
            stack = ws.views.get(user, [])
            view = find_view(ws.views, user, view_id)
            if view is None:
                return _error("view_not_found", "That form is closed.")
            # Closing the bottom view (or one that asks for it) closes the whole stack.
            cleared = view is stack[0] or bool(view.get("clear_on_close"))
            closed = list(stack) if cleared else [view]
            if cleared:
                ws.views.pop(user, None)
            else:
                stack.remove(view)
        ws.touch()
        for gone in closed:
            if gone.get("notify_on_close"):
                self._queue("interaction", self.slack.events.view_closed(user, gone, is_cleared=cleared))
        return {"ok": True}

    def react(self, user: str, channel: str, ts: str, name: str) -> Result:
        ws = self.ws
        reaction = str(name or "").strip().strip(":")
        if not _REACTION.fullmatch(reaction):
            return _error("invalid_name", f"There is no emoji :{reaction}:.")
        with ws.lock:
            found = self._conversation(user, channel)
            if isinstance(found, dict):
                return found
            message = ws.find(found.id, ts)
            if message is None:
                return _error("message_not_found", "That message is gone.")
            removed = remove_reaction(message, user, reaction)
            if removed:
                envelope = self.slack.events.reaction_removed(found, message, user, reaction)
            else:
                ws.add_reaction(message, user, reaction)
                envelope = self.slack.events.reaction_added(found, message, user, reaction)
            bot_sees = ws.bot_user_id in found.members
        ws.touch()
        kind = envelope["event"]["type"]
        if bot_sees and kind in self.bot_events:
            self._queue("event", envelope)
        return {"ok": True, "added": not removed}

    # -- messages and commands ----------------------------------------------

    def _post(self, user: str, channel: Channel, text: str, thread_ts: str | None, *, as_given: bool = False) -> Result:
        ws = self.ws
        events = self.slack.events
        with ws.lock:
            encoded = text if as_given else self._encode_mentions(text)
            fields: Message = {
                "user": user,
                "text": encoded,
                "client_msg_id": str(uuid.uuid4()),
                "blocks": [_rich_text(encoded)],
            }
            message = ws.post(channel.id, fields, thread_ts)
            stored = copy.deepcopy(message)
            bot_in = ws.bot_user_id in channel.members
        envelopes: list[dict[str, Any]] = []
        if bot_in and _MESSAGE_EVENT[channel.kind] in self.bot_events:
            envelopes.append(events.message(channel, stored))
        if channel.kind != "im" and f"<@{ws.bot_user_id}>" in encoded:
            if not bot_in:
                bot = ws.users[ws.bot_user_id].real_name
                self._slackbot(
                    user, channel.id, f"You mentioned @{bot}, but they're not in this channel.", stored.get("thread_ts")
                )
            elif "app_mention" in self.bot_events:
                envelopes.insert(0, events.app_mention(channel, stored))
        for envelope in envelopes:
            self._queue("event", envelope)
        return {"ok": True, "channel": channel.id, "ts": stored["ts"], "message": stored}

    def _command(self, user: str, channel: Channel, name: str, text: str, thread_ts: str | None) -> Result:
        ws = self.ws
        if name.lower() not in self.commands:
            note = (
                f"{name} is not a valid command. In Slack, all messages that start with the "
                '"/" character are interpreted as commands.'
            )
            shown = self._slackbot(user, channel.id, note, thread_ts)
            return {"ok": True, "command": name, "ephemeral": shown}
        fields = self.slack.command_payload(channel.id, user, text, command=name.lower())
        response_id = fields["response_url"].rsplit("/", 1)[1]
        answer = self._interact(lambda client: client.send_form(fields))
        if isinstance(answer, dict):
            self._slackbot(user, channel.id, f'{name} failed with the error "{answer["error"]}"', thread_ts)
            return answer
        body = _answer_body(answer)
        if body:
            # Slack treats the answer like a post to the command's response_url.
            if body.get("response_type") == "in_channel":
                # ... and shows the command itself in the channel along with an in_channel answer.
                ws.post(channel.id, {"user": user, "text": f"{name} {text}".strip()}, thread_ts)
            if thread_ts and not body.get("thread_ts"):
                body["thread_ts"] = ws.thread_root(channel.id, thread_ts)
            try:
                response_urls.handle(ws, response_id, body)
            except SlackError as err:
                log.warning("%s: Slack would not show the app's answer %r: %s", name, body, err.error)
            ws.touch()
        return {"ok": True, "command": name}

    def _slackbot(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> Result:
        """An ephemeral note from Slackbot to `user`."""
        ws = self.ws
        with ws.lock:
            note = {"channel": channel, "user": user, "ts": ws.clock.next(), "thread_ts": thread_ts}
            note.update(via="slackbot", text=text)
            ws.ephemerals.append(note)
            shown = self._shown_ephemeral(note)
        ws.touch()
        return shown

    def _encode_mentions(self, text: str) -> str:
        """Typed text as Slack stores it: &, < and > escaped; "@ember" / "@Ana" become "<@U...>", "@here"
        and friends "<!here>"."""
        ws = self.ws
        by_name: dict[str, str] = {}
        for u in ws.users.values():
            by_name.setdefault(u.name.lower(), u.id)
            if u.is_bot:
                by_name.setdefault(u.real_name.lower(), u.id)

        def encode(match: re.Match[str]) -> str:
            word = match.group(1).lower()
            if word in _BROADCASTS:
                return _BROADCASTS[word]
            found = by_name.get(word)
            return f"<@{found}>" if found else match.group(0)

        # Slack's clients escape what would read as markup before they send a message.
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return _MENTION.sub(encode, escaped)

    # -- modals ---------------------------------------------------------------

    def _after_submission(self, user: str, view_id: str, state: dict[str, Any], body: dict[str, Any]) -> Result:
        """What Slack does with the app's answer to a view_submission."""
        ws = self.ws
        action = body.get("response_action")
        with ws.lock:
            stack = ws.views.get(user, [])
            view = find_view(ws.views, user, view_id)
            if view is None:  # closed meanwhile (e.g. the app called views.update on another)
                return {"ok": True}
            if action == "errors":
                view["state"] = {"values": copy.deepcopy(state)}
                ws.touch()
                errors = body["errors"] if isinstance(body.get("errors"), dict) else {}
                text = " ".join(str(e) for e in errors.values()) or "The app refused the form."
                return _error("invalid_form", text, errors=errors)
            if action in ("update", "push"):
                try:
                    new = check_view(body.get("view"))
                except SlackError:
                    log.warning("the app answered response_action %r without a valid view", action)
                    return _error("invalid_view", "The app answered with a form Slack can't show.")
                if action == "update":
                    shown = show(ws, new, view_id=view["id"])
                    shown.update(previous_view_id=view["previous_view_id"], root_view_id=view["root_view_id"])
                    stack[stack.index(view)] = shown
                elif len(stack) >= PUSH_LIMIT:
                    return _error("push_limit_reached", "Slack shows at most three forms on top of each other.")
                else:
                    shown = show(ws, new)
                    shown.update(previous_view_id=stack[-1]["id"], root_view_id=stack[0]["id"])
                    stack.append(shown)
            elif action == "clear":
                ws.views.pop(user, None)
            else:
                stack.remove(view)
                if not stack:
                    ws.views.pop(user, None)
        ws.touch()
        return {"ok": True}

    # -- delivery ---------------------------------------------------------------

    def _queue(self, kind: str, payload: dict[str, Any]) -> None:
        if self._delivery is None:
            log.warning("the playground is not running; dropped a %s", kind)
            return
        self._delivery.put(Job(kind, payload))

    def _interact(self, send: Callable[[SlackClient], requests.Response]) -> requests.Response | Result:
        """Send one command or interaction now; the app's answer, or what went wrong as a result."""
        if not self.events_url:
            return _error("not_connected", "Ember is not connected to the playground yet.")
        client = SlackClient(self.events_url, self.signing_secret, timeout=TIMEOUT)
        try:
            with client.session:
                answer = send(client)
        except requests.Timeout:
            log.warning("Ember did not answer within %.0f s", TIMEOUT)
            return _error("operation_timeout", f"Ember did not answer within {TIMEOUT:.0f} seconds.")
        except requests.RequestException as err:
            log.warning("could not reach Ember at %s: %s", self.events_url, err)
            return _error("dispatch_failed", "Ember could not be reached.")
        if not 200 <= answer.status_code < 300:
            log.warning("Ember answered HTTP %s: %s", answer.status_code, answer.text[:200])
            return _error("dispatch_failed", f"Ember answered with an error (HTTP {answer.status_code}).")
        return answer

    # -- helpers -------------------------------------------------------------------

    def _person(self, user: str) -> User | Result:
        found = self.ws.users.get(user) if isinstance(user, str) else None
        if found is None or found.is_bot:
            return _error("user_not_found", "There is no such person here.")
        return found

    def _conversation(self, user: str, channel: str) -> Channel | Result:
        """The conversation `channel` if `user` may see it (as Slack would show it to them)."""
        person = self._person(user)
        if isinstance(person, dict):
            return person
        found = self.ws.channel(channel) if isinstance(channel, str) else None
        if found is None or not self._lists(found, person.id):
            return _error("channel_not_found", "That conversation does not exist, or you can't see it.")
        return found

    def _lists(self, channel: Channel, user: str) -> bool:
        """Whether `user`'s sidebar shows `channel`: any public channel, others they are in; of IMs only their own."""
        if channel.kind == "im":
            return channel.user == user
        return channel.visible_to(user)

    def _channel_entry(self, channel: Channel) -> dict[str, Any]:
        ws = self.ws
        if channel.kind == "public":
            label = f"#{channel.name}"
        elif channel.kind == "private":
            label = f"🔒 {channel.name}"
        elif channel.kind == "im":
            label = f"{ws.users[ws.bot_user_id].real_name} (DM)"
        else:
            label = ", ".join(sorted(ws.users[m].real_name for m in channel.members if m in ws.users))
        kind = "private" if channel.kind == "mpim" else channel.kind
        return {"id": channel.id, "name": channel.name, "kind": kind, "label": label}

    def _author(self, message: Message) -> dict[str, Any]:
        ws = self.ws
        user = ws.users.get(message.get("user", ""))
        if user is not None:
            return _person(user) | {"is_bot": user.is_bot}
        if message.get("user") == SLACKBOT["id"]:
            return dict(SLACKBOT)
        if message.get("bot_id"):
            name = str(message.get("username") or message["bot_id"])
            return {"id": message["bot_id"], "name": name, "real_name": name, "is_bot": True}
        ref = str(message.get("user", ""))
        return {"id": ref, "name": ref, "real_name": ref, "is_bot": False}

    def _shown(self, channel: Channel, message: Message) -> dict[str, Any]:
        shown = copy.deepcopy(message)
        shown["author"] = self._author(message)
        shown["streaming"] = (channel.id, message["ts"]) in self.ws.streaming
        # As chat.getPermalink answers: on the page where one is mounted (Workspace.web_url).
        base_url = (self.ws.web_url or self.slack.base_url).rstrip("/")
        shown["permalink"] = permalink(base_url, channel.id, message)
        return shown

    def _shown_ephemeral(self, ephemeral: Message) -> dict[str, Any]:
        shown = copy.deepcopy(ephemeral)
        if ephemeral.get("via") == "slackbot":
            shown["author"] = dict(SLACKBOT)
        else:
            shown["author"] = _person(self.ws.users[self.ws.bot_user_id]) | {"is_bot": True}
        return shown

    @staticmethod
    def _call(hook: Callable[[], dict[str, Any]] | None, default: dict[str, Any]) -> dict[str, Any]:
        if hook is None:
            return default
        try:
            return hook()
        except Exception as err:
            log.exception("a playground hook failed")
            return _error("internal_error", str(err) or type(err).__name__)


def _first_line(text: str) -> str:
    """A conversation's name until the app titles it: its first line, a link shown by its label, cut
    to fit between Slack's <...> tokens (never inside one)."""
    line = _LINK.sub(lambda m: m.group(1), text.strip().split("\n", 1)[0])
    if len(line) <= TITLE_CHARS:
        return line
    cut = TITLE_CHARS - 1
    token = next((m for m in _TOKEN_SPAN.finditer(line) if m.start() < cut < m.end()), None)
    return line[: token.start() if token else cut].rstrip() + "…"


def _person(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "real_name": user.real_name}


def _rich_text(text: str) -> dict[str, Any]:
    """The rich_text block Slack's client stores with a typed message."""
    elements: list[dict[str, Any]] = []
    at = 0
    for token in _TOKEN.finditer(text):
        if token.start() > at:
            elements.append({"type": "text", "text": text[at : token.start()]})
        if token.group(1):
            elements.append({"type": "user", "user_id": token.group(1)})
        else:
            elements.append({"type": "broadcast", "range": token.group(2)})
        at = token.end()
    if at < len(text):
        elements.append({"type": "text", "text": text[at:]})
    block_id = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))
    section = {"type": "rich_text_section", "elements": elements}
    return {"type": "rich_text", "block_id": block_id, "elements": [section]}


def _state_values(view: Message, values: Any) -> dict[str, Any] | None:
    """`values` in view_submission's state shape, each value typed as the view's input element is."""
    if not isinstance(values, dict):
        return None
    types = {
        (block.get("block_id"), block["element"].get("action_id")): block["element"].get("type")
        for block in view.get("blocks") or []
        if block.get("type") == "input" and isinstance(block.get("element"), dict)
    }
    state: dict[str, Any] = {}
    for block_id, actions in values.items():
        if not isinstance(actions, dict):
            return None
        state[str(block_id)] = {}
        for action_id, value in actions.items():
            if not isinstance(value, dict):
                return None
            kind = value.get("type") or types.get((block_id, action_id)) or "plain_text_input"
            state[str(block_id)][str(action_id)] = {**value, "type": kind}
    return state


def _answer_body(answer: requests.Response) -> dict[str, Any]:
    """The app's HTTP answer as Slack reads it: JSON, or plain text as a message."""
    if not answer.content.strip():
        return {}
    try:
        parsed = answer.json()
    except ValueError:
        return {"text": answer.text}
    return parsed if isinstance(parsed, dict) else {}
