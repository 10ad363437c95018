"""Assembles the Bolt app: Slack client pointed at SLACK_API_URL, services in the context, listeners."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from urllib.error import URLError

from slack_bolt import App, BoltContext
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.settings import Settings, SettingsError
from handlers.slack.claims import claim_middleware
from handlers.slack.services import CONTEXT_KEY, Services
from handlers.slack.wiring import register

log = logging.getLogger(__name__)

RETRIES = 3  # per Web API call, for each of: 429, 5xx, a dropped connection


def build_bolt_app(settings: Settings, services: Services, *, executor: Executor) -> App:
    settings.require_slack()
    assert settings.slack_bot_token is not None  # require_slack() said so
    token = settings.slack_bot_token.get_secret_value()
    client = web_client(settings, token)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    bolt_log = logging.getLogger("ember.bolt")
    if not any(isinstance(f, _SameTokenNotice) for f in bolt_log.filters):
        bolt_log.addFilter(_SameTokenNotice())
    app = App(
        client=client,
        signing_secret=secret,
        # Socket Mode has no signature to check; over HTTP, bot.server checks it before Bolt sees the request.
        request_verification_enabled=False,
        listener_executor=executor,
        logger=bolt_log,
    )
    app.use(_inject(services))
    # Before the ack: an answerable event is claimed, with what is needed to answer it after a crash.
    app.use(claim_middleware)
    register(app)
    return app


class _SameTokenNotice(logging.Filter):
    """Drops Bolt's "As you gave `client` as well, `token` will be unused": Bolt reads SLACK_BOT_TOKEN
    from the environment on its own, and warns at every start, though it is the very token the client
    was built with."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def web_client(settings: Settings, token: str | None = None) -> WebClient:
    """Every WebClient Ember makes: pointed at SLACK_API_URL, riding out rate limits (waiting what
    Retry-After says), Slack's 5xx answers and dropped connections, each a few times."""
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=RETRIES),
            ServerErrorRetryHandler(max_retry_count=RETRIES),
            ConnectionErrorRetryHandler(max_retry_count=RETRIES),
        ],
    )


def check_slack(settings: Settings) -> None:
    """Ask Slack who we are, so a wrong token or URL stops start-up with a clear message."""
    assert settings.slack_bot_token is not None
    client = web_client(settings, settings.slack_bot_token.get_secret_value())
    try:
        identity = client.auth_test()
    except SlackApiError as exc:
        _check_api_url(settings, exc)
        error = exc.response.get("error")
        raise SettingsError(
            f"Slack rejected SLACK_BOT_TOKEN ({error}): set it to the Bot User OAuth Token of your app (xoxb-...)."
        ) from None
    except (OSError, URLError) as exc:
        raise SettingsError(
            f"cannot reach Slack's Web API at SLACK_API_URL={settings.slack_api_url} ({exc}): "
            "check the URL and this machine's network."
        ) from None
    log.info("connected to Slack as %s in %s", identity.get("user"), identity.get("team"))
    if settings.slack_app_token is not None:
        _check_app_token(settings, settings.slack_app_token.get_secret_value())


def _check_app_token(settings: Settings, token: str) -> None:
    """Socket Mode opens its connection with the app-level token: a wrong one must stop start-up here,
    not after the model has loaded. The URL this asks for is single-use and simply left unused."""
    try:
        web_client(settings).apps_connections_open(app_token=token)
    except SlackApiError as exc:
        _check_api_url(settings, exc)
        error = exc.response.get("error")
        raise SettingsError(
            f"Slack rejected SLACK_APP_TOKEN ({error}): set it to an app-level token with the "
            "connections:write scope (xapp-...), or unset it to receive events over HTTP."
        ) from None


# What a Web API answers for a method it does not have: the URL's path is wrong, not the token.
_NOT_AN_API = frozenset({"unknown_method", "not_found", None})


def _check_api_url(settings: Settings, exc: SlackApiError) -> None:
    """A refusal that is not Slack's (not JSON, an HTTP error, no such method) blames SLACK_API_URL."""
    response = exc.response
    data = response.data if isinstance(response.data, dict) else None
    error = data.get("error") if data is not None else None
    # slack_sdk stands in {"ok": false, "error": "Received a response in a non-JSON format: ..."}.
    not_json = data is None or (isinstance(error, str) and error.startswith("Received a response in a non-JSON"))
    if not not_json and response.status_code in (200, 429) and error not in _NOT_AN_API:
        return
    what = "not JSON" if not_json else f"error {error}" if error else "no error named"
    raise SettingsError(
        f"SLACK_API_URL={settings.slack_api_url} does not answer like Slack's Web API "
        f"(HTTP {response.status_code}, {what}): unset it to use https://slack.com/api/, or set it to "
        "the base URL of a Slack-compatible server, ending in /api/."
    ) from None


def _inject(services: Services) -> Callable[[BoltContext, Callable[[], None]], None]:
    def inject_services(context: BoltContext, next: Callable[[], None]) -> None:
        context[CONTEXT_KEY] = services
        next()

    return inject_services
