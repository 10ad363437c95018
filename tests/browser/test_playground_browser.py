"""The playground as a new user meets it: `bash scripts/run.sh` with no Slack settings, the page in a
real (headless) Chromium, and Ember answering, learning from a correction and keeping a DM private.

Screenshots of each step are saved under artifacts/playground/ (the README names the folder).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright

from tests.support.cli import ember_env

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "playground"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = re.compile(r"Ember is running in a local playground: open (http://\S+/)")
# A tiny random model answers in a second or two; the wait covers a busy two-core machine.
ANSWER_MS = 120_000
# What the page does after a click waits on Ember; a busy shared machine may take seconds.
expect.set_options(timeout=30_000)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/setup.sh --dev does, as root)",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmberProcess:
    """`ember run` (or scripts/run.sh) in a process of its own, its output collected."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.output: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            found = READY.search(line)
            if found:
                self.url = found.group(1)
                self._ready.set()

    def wait_ready(self, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(1):
            assert self.process.poll() is None, "ember exited:\n" + "".join(self.output)
            assert time.monotonic() < deadline, "no playground line:\n" + "".join(self.output)
        return self.url

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return "".join(self.output)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def settings_env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    # Blank Slack settings win over a developer's .env: this is a machine with no Slack app.
    return ember_env(
        tmp_path,
        SLACK_BOT_TOKEN="",
        SLACK_SIGNING_SECRET="",
        SLACK_APP_TOKEN="",
        EMBER_PORT=str(free_port()),
        EMBER_MODEL=str(tiny_model_dir),
        EMBER_MAX_NEW_TOKENS="24",
        EMBER_STREAM_INTERVAL="0.2",
        EMBER_LOG_LEVEL="INFO",
    )


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")
    return page


def switch_to(page: Page, name: str) -> str:
    """Pick a person in the user switcher; returns their user id."""
    option = page.locator(f"#user-switcher option[data-name='{name}']")
    user_id = str(option.get_attribute("value"))
    page.select_option("#user-switcher", value=user_id)
    page.wait_for_selector(f"body[data-user='{user_id}'][data-ready='true']")
    return user_id


def open_channel(page: Page, name: str) -> None:
    page.locator(f"#channel-list .sidebar-item[data-channel-name='{name}']").click()
    page.wait_for_selector(f"#channel-list .sidebar-item.active[data-channel-name='{name}']")
    # Opening a channel empties the pane and loads its history; the intro comes with it.
    page.locator("#messages .channel-intro").wait_for()


def send(page: Page, text: str, box: str = "#composer") -> None:
    area = page.locator(f"{box} textarea")
    area.fill(text)
    area.press("Enter")


def ember_reply_in_thread(page: Page) -> Locator:
    """The thread pane's first reply from Ember, once it has finished streaming."""
    reply = (
        page.locator("#thread-messages .message:not(.ephemeral)")
        .filter(has=page.locator(".message-author", has_text="Ember"))
        .first
    )
    reply.wait_for(timeout=ANSWER_MS)
    page.wait_for_selector("#thread-messages .message.streaming", state="detached", timeout=ANSWER_MS)
    return reply


def ask_in_channel(page: Page, text: str, *, shot_name: str | None = None) -> Locator:
    """Mention Ember in the open channel, open the thread it answers in, return Ember's reply."""
    send(page, text)
    question = page.locator("#messages .message", has_text=text.removeprefix("@Ember ")).last
    question.wait_for()
    question.locator(".reply-count").wait_for(timeout=ANSWER_MS)
    if shot_name:  # the answer as it streams in (or just after, on a fast machine)
        question.locator(".reply-count").click()
        page.wait_for_selector("#thread-pane #thread-messages .message")
        shot(page, shot_name)
    else:
        question.locator(".reply-count").click()
    return ember_reply_in_thread(page)


def visible_text(page: Page) -> str:
    return str(page.locator("body").inner_text())


def test_a_new_user_tries_ember_in_the_browser(browser: Browser, settings_env: dict[str, str]) -> None:
    shutil.rmtree(SHOTS, ignore_errors=True)
    ember = EmberProcess(["bash", "scripts/run.sh"], settings_env)
    try:
        url = ember.wait_ready()
        assert url == f"http://127.0.0.1:{settings_env['EMBER_PORT']}/"
        page = open_page(browser, url)
        ana = switch_to(page, "ana")
        open_channel(page, "general")
        shot(page, "01-general")

        # Ana asks in #general; the answer streams into the thread with feedback controls on it.
        reply = ask_in_channel(page, "@Ember What is the VPN host?", shot_name="02-answer-streaming")
        shot(page, "03-answer")
        down = reply.locator(".feedback-button[data-value^='down']")
        down.click()
        expect(down).to_have_class(re.compile("selected"))
        expect(page.locator("#thread-messages .ephemeral", has_text="Thanks for the feedback")).to_be_visible()
        shot(page, "04-thumbs-down")

        # "Suggest a better answer": the modal, an empty submission refused, then the correction.
        reply.locator(".block-button[data-action-id='ember_suggest']").click()
        modal = page.locator("#modal-root .modal")
        modal.wait_for()
        modal.locator(".modal-submit").click()
        expect(modal.locator(".input-error")).to_contain_text("Please write the answer")
        modal.locator(".input-block textarea, .input-block input").first.fill(
            "The VPN host is vpn.acme.internal since May"
        )
        shot(page, "05-suggest-modal")
        modal.locator(".modal-submit").click()
        modal.wait_for(state="detached")
        expect(page.locator(".ephemeral", has_text="I'll remember your answer")).to_be_visible()
        shot(page, "06-correction-thanks")

        # A message's menu holds Ember's shortcuts: a summary of the thread just for Ana, then a chat
        # about the message in Ember's pane.
        question = page.locator("#messages .message", has_text="What is the VPN host?").first
        notes = page.locator("#thread-messages .ephemeral")
        before = notes.count()
        question.hover()
        question.locator(".more-actions").click()
        question.locator(".shortcut-option[data-callback-id='ember_summarize_thread']").click()
        expect(notes).to_have_count(before + 1, timeout=ANSWER_MS)
        question.hover()
        question.locator(".more-actions").click()
        question.locator(".shortcut-option[data-callback-id='ember_ask_about']").click()
        pane = page.locator("#agent-pane")
        expect(pane.locator(".agent-chat").first).to_contain_text("You asked me about this message", timeout=ANSWER_MS)
        shot(page, "06-ask-about-this")
        pane.locator(".agent-close").click()

        # Ember beside #general (the agent view's pane) offers a catch-up of it first.
        page.locator("#agent-toggle").click()
        expect(pane.locator(".agent-context")).to_have_text("Beside #general")
        chips = pane.locator(".suggested-prompts .prompt-chip")
        expect(chips.first).to_have_text("Catch me up on #general")
        shot(page, "07-ember-beside-general")
        # A prompt opens a chat of its own: Ember titles it with the question and answers in it.
        pane.locator(".prompt-chip[data-message='What can you help me with?']").click()
        expect(pane.locator(".agent-title")).to_have_text("What can you help me with?", timeout=ANSWER_MS)
        answer = pane.locator("#agent-messages .message").filter(has=page.locator(".message-author", has_text="Ember"))
        answer.first.wait_for(timeout=ANSWER_MS)
        page.wait_for_selector("#agent-messages .message.streaming", state="detached", timeout=ANSWER_MS)
        expect(pane.locator(".agent-status")).to_be_hidden()
        shot(page, "08-ember-chat")
        # Looking at #random with the pane open: the prompts follow; the chat is in the list.
        pane.locator(".agent-back").click()
        open_channel(page, "random")
        expect(pane.locator(".agent-context")).to_have_text("Beside #random")
        expect(chips.first).to_have_text("Catch me up on #random")
        expect(pane.locator(".agent-chat").first).to_contain_text("What can you help me with?")
        pane.locator(".agent-close").click()
        expect(pane).to_be_hidden()

        # Ana's DM with Ember (its messages tab) holds a secret; Ember answers in the question's thread.
        open_channel(page, "Ember")
        expect(page.locator("#messages .suggested-prompts .prompt-chip").first).to_be_visible()
        send(page, "My locker code is 4812")
        secret = page.locator("#messages .message", has_text="4812")
        secret.locator(".reply-count").wait_for(timeout=ANSWER_MS)
        secret.locator(".reply-count").click()
        ember_reply_in_thread(page)
        shot(page, "09-ana-dm")

        # Ben asks a paraphrase in another public channel: the answer cites Ana's correction.
        switch_to(page, "ben")
        assert "4812" not in visible_text(page)
        open_channel(page, "random")
        reply = ask_in_channel(page, "@Ember what's the hostname for the vpn?")
        citation = reply.locator("a[href*='/archives/']:not(.message-time)").first
        expect(citation).to_be_visible()
        shot(page, "10-cited-correction")
        citation.click()
        expect(page.locator("#channel-list .sidebar-item.active[data-channel-name='general']")).to_be_visible()
        expect(page.locator("#thread-pane")).to_contain_text("What is the VPN host?")
        shot(page, "11-source-thread")

        # Nothing of Ana's DM reaches Ben: not his DM, not his channels, not his answers.
        reply = ask_in_channel(page, "@Ember what is Ana's locker code?")
        assert "4812" not in str(reply.inner_text()), "Ana's DM secret in an answer to Ben"
        for channel in ("general", "random", "leads", "Ember"):
            open_channel(page, channel)
            assert "4812" not in visible_text(page), f"Ana's DM secret shows in Ben's {channel}"
        assert ana not in page.locator("#messages").inner_html(), "nothing from Ana's DM in Ben's own DM"

        # Bad input gets what Slack would give, and nothing breaks.
        open_channel(page, "general")
        before = page.locator("#messages .message").count()
        send(page, "   ")
        send(page, "x" * 50_000)
        expect(page.locator("#composer .error")).to_have_attribute("data-error", "msg_too_long")
        send(page, "/nope")
        expect(page.locator(".ephemeral", has_text="/nope is not a valid command")).to_be_visible()
        send(page, "/ember frobnicate")
        expect(
            page.locator(".ephemeral", has_text="I don't know `/ember frobnicate`")
            .or_(page.locator(".ephemeral", has_text="I don't know /ember frobnicate"))
            .first
        ).to_be_visible(timeout=ANSWER_MS)
        shot(page, "12-bad-input")
        humans = page.locator("#messages .message:not(.ephemeral)").count()
        assert humans == before, "refused input stores no message"

        # Ana's Home tab: the model, what Ember keeps of her, and Forget me, which asks first.
        switch_to(page, "ana")
        page.locator("#channel-list .sidebar-item[data-home]").click()
        home = page.locator("#messages .home-view")
        expect(home).to_contain_text("Model:")
        expect(home).to_contain_text("questions with my answers")
        assert "0 questions with my answers" not in str(home.inner_text())
        shot(page, "13-home")
        asked: list[str] = []

        def cancel(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", cancel)
        home.locator(".block-button[data-action-id='ember_home_forget']").click()
        assert asked and "cannot be undone" in asked[0], "Forget me asks first"
        expect(home).not_to_contain_text("Done: I removed")
        page.once("dialog", lambda dialog: dialog.accept())
        home.locator(".block-button[data-action-id='ember_home_forget']").click()
        expect(home).to_contain_text("Done: I removed")
        expect(home).to_contain_text("0 questions with my answers, 0 votes, 0 memories")
        shot(page, "14-home-forgotten")
        open_channel(page, "general")
        page.close()
    finally:
        output = ember.stop()
    assert ember.process.returncode == 0, output
    assert "Traceback" not in output, output
    # The console shows Ember's own lines, not transformers' batching chatter.
    assert "ContinuousBatchingLogger" not in output, output


def test_a_restart_keeps_the_channels_threads_and_memory(browser: Browser, settings_env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "bot", "run"]
    first = EmberProcess(argv, settings_env)
    try:
        url = first.wait_ready()
        page = open_page(browser, url)
        switch_to(page, "cleo")
        open_channel(page, "general")
        ask_in_channel(page, "@Ember Where is the deploy runbook?")
        # Cleo corrects Ember in the thread; Ember remembers it.
        send(page, "@Ember No, the deploy runbook lives at wiki/ops/deploy", box="#thread-composer")
        expect(page.locator("#thread-messages", has_text="I'll remember that")).to_be_visible(timeout=ANSWER_MS)
        page.close()
    finally:
        output = first.stop()
    assert first.process.returncode == 0, output

    second = EmberProcess(argv, settings_env)
    try:
        url = second.wait_ready()
        page = open_page(browser, url)
        switch_to(page, "ben")
        open_channel(page, "general")
        question = page.locator("#messages .message", has_text="Where is the deploy runbook?")
        expect(question).to_be_visible()
        question.locator(".reply-count").click()
        expect(page.locator("#thread-messages")).to_contain_text("wiki/ops/deploy")
        shot(page, "11-after-restart")
        # "Run nightly training now" runs the nightly job and shows how it went.
        expect(page.locator("#status-bar .status-training")).to_contain_text("never")
        page.locator("#train-button").click()
        result = page.locator("#training-log .training-result")
        expect(result).not_to_have_text(re.compile(r"^(|Running…)$"), timeout=ANSWER_MS)
        expect(result).not_to_contain_text("failed")
        expect(page.locator("#status-bar .status-training")).not_to_contain_text("never")
        shot(page, "12-training-run")
        # Ember's memory came back too: a paraphrase elsewhere cites Cleo's correction.
        open_channel(page, "random")
        reply = ask_in_channel(page, "@Ember where can I find the runbook for deploys?")
        expect(reply.locator("a[href*='/archives/']:not(.message-time)").first).to_be_visible()
        page.close()
    finally:
        output = second.stop()
    assert second.process.returncode == 0, output
    assert os.path.exists(settings_env["EMBER_DATA_DIR"] + "/playground/playground.db")
