"""Ember's settings, read from the environment (and a `.env` file) once, at start-up.

Slack's own variable names are kept for Slack tokens; everything else is `EMBER_*`.
A bad or missing setting stops start-up with a message naming the variable and what to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.session import DatabaseURLError, check_url
from handlers.qa.schedule import cron_trigger

SLACK_API_DEFAULT = "https://slack.com/api/"

# What to tell the user for each field when its value is unusable.
_HINTS: dict[str, str] = {
    "SLACK_BOT_TOKEN": "your bot token from the Slack app's OAuth page (starts with xoxb-)",
    "SLACK_SIGNING_SECRET": "the signing secret from the Slack app's Basic Information page",
    "SLACK_APP_TOKEN": "an app-level token with connections:write (starts with xapp-), or leave it unset for HTTP",
    "SLACK_API_URL": "the base URL of Slack's Web API, e.g. https://slack.com/api/",
    "EMBER_HOST": "the interface to listen on, e.g. 127.0.0.1 or 0.0.0.0",
    "EMBER_PORT": "a TCP port between 1 and 65535 (0 picks a free one)",
    "EMBER_DATA_DIR": "a writable directory for the database and converted models",
    "EMBER_DATABASE_URL": "a SQLAlchemy URL, e.g. sqlite:////var/lib/ember/ember.db or postgresql+psycopg://...",
    "EMBER_MODEL": "'default' (the packaged SmolLM2-135M-Instruct), a Hugging Face hub id, or a local directory",
    "EMBER_DEVICE": "one of auto, cpu, cuda",
    "EMBER_LLM_BACKEND": "local (the model runs in Ember) or openai (an OpenAI-compatible server such as vLLM)",
    "EMBER_LLM_URL": "the base URL of the OpenAI-compatible server, e.g. http://gpu-box:8000/v1",
    "EMBER_LLM_MODEL": "the model name the server serves (vLLM's --served-model-name)",
    "EMBER_MAX_NEW_TOKENS": "a positive whole number of tokens per answer, e.g. 256",
    "EMBER_MAX_CONTEXT_TOKENS": "a positive whole number, or 0 for the model's own context length",
    "EMBER_WORKERS": "a positive whole number of questions taken on at once",
    "EMBER_ANSWER_TIMEOUT": "seconds an answer may take before Ember stops and posts what it has, e.g. 300",
    "EMBER_MEMORY": "true (recall pinned facts and corrections) or false",
    "EMBER_SCHEDULER": "true in exactly one process (it runs the nightly training), false in replicas",
    "EMBER_TRAIN_CRON": "a crontab line, e.g. '0 3 * * *' for 03:00 every night",
    "EMBER_TIMEZONE": "an IANA time zone name, e.g. Europe/Berlin or UTC",
    "EMBER_TRAIN_ON_PRIVATE": "true to train on feedback from DMs and private channels too, else false",
    "EMBER_TRAIN_AUGMENT": "true (rephrase each taught fact before training) or false",
    "EMBER_TRAIN_MIN_EXAMPLES": "the least feedback examples worth a training run, e.g. 20",
    "EMBER_TRAIN_MISFIRE_GRACE": "seconds a missed nightly run may still start late, e.g. 21600",
    "EMBER_MODEL_SYNC_SECONDS": "how often the bot checks for a newly promoted or rolled-back version, e.g. 60",
    "EMBER_STREAM_INTERVAL": "seconds between updates of a streaming answer, e.g. 1.0",
    "EMBER_MAX_QUEUE": "how many questions may be in the model's queue before askers are told they wait (0: never)",
    "EMBER_KV_CACHE_TOKENS": "tokens of KV cache shared by all answers in flight, at least 256, e.g. 32768",
    "EMBER_MAX_BATCH_TOKENS": "tokens per batched forward step, at least 64, e.g. 2048",
    "EMBER_STOP_LOOPS": "true (an answer that starts repeating itself ends there) or false",
    "EMBER_DIGEST_MAX_MESSAGES": "the most messages one digest reads, e.g. 5000",
    "EMBER_DIGEST_QUIET": "skip (a quiet window posts nothing) or note (one short line)",
    "EMBER_DIGEST_SYNC_SECONDS": "how often the scheduler re-reads digest subscriptions changed elsewhere, e.g. 60",
    "EMBER_REPORT_CHANNEL": "a channel id (C...) where each nightly training run reports what it did, or unset",
    "EMBER_PLAYGROUND": "true (without SLACK_BOT_TOKEN, `ember run` serves a local workspace) or false",
}


# Never echoed back in an error. A database URL may hold a password.
_SECRETS = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "EMBER_LLM_API_KEY", "EMBER_DATABASE_URL"}


class SettingsError(Exception):
    """A setting is missing or malformed; the message says which and what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default=SLACK_API_DEFAULT, validation_alias="SLACK_API_URL")

    host: str = Field(default="127.0.0.1", validation_alias="EMBER_HOST")
    port: int = Field(default=3000, ge=0, le=65535, validation_alias="EMBER_PORT")
    data_dir: Path = Field(default=Path("data"), validation_alias="EMBER_DATA_DIR")
    database_url: str | None = Field(default=None, validation_alias="EMBER_DATABASE_URL")

    model: str = Field(default="default", validation_alias="EMBER_MODEL")
    llm_backend: Literal["local", "openai"] = Field(default="local", validation_alias="EMBER_LLM_BACKEND")
    llm_url: str | None = Field(default=None, validation_alias="EMBER_LLM_URL")
    llm_model: str | None = Field(default=None, validation_alias="EMBER_LLM_MODEL")
    llm_api_key: SecretStr | None = Field(default=None, validation_alias="EMBER_LLM_API_KEY")
    # Whether the server takes tool schemas (vLLM needs --enable-auto-tool-choice and a --tool-call-parser).
    llm_tools: bool = Field(default=False, validation_alias="EMBER_LLM_TOOLS")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", validation_alias="EMBER_DEVICE")
    # Small models follow a system prompt shaped like the one they were trained with ("a helpful AI
    # assistant named ..."); the packaged SmolLM2 answers noticeably worse with looser wording.
    system_prompt: str = Field(
        default=(
            "You are a helpful AI assistant named Ember. "
            "You answer questions from a team in Slack, clearly and briefly."
        ),
        validation_alias="EMBER_SYSTEM_PROMPT",
    )
    max_new_tokens: int = Field(default=256, gt=0, validation_alias="EMBER_MAX_NEW_TOKENS")
    max_context_tokens: int = Field(default=0, ge=0, validation_alias="EMBER_MAX_CONTEXT_TOKENS")
    workers: int = Field(default=16, gt=0, validation_alias="EMBER_WORKERS")
    answer_timeout: float = Field(default=300.0, gt=0, validation_alias="EMBER_ANSWER_TIMEOUT")
    memory: bool = Field(default=True, validation_alias="EMBER_MEMORY")
    scheduler: bool = Field(default=True, validation_alias="EMBER_SCHEDULER")
    train_cron: str = Field(default="0 3 * * *", validation_alias="EMBER_TRAIN_CRON")
    timezone: str = Field(default="UTC", validation_alias="EMBER_TIMEZONE")
    train_on_private: bool = Field(default=False, validation_alias="EMBER_TRAIN_ON_PRIVATE")
    train_augment: bool = Field(default=True, validation_alias="EMBER_TRAIN_AUGMENT")
    train_min_examples: int = Field(default=20, ge=1, validation_alias="EMBER_TRAIN_MIN_EXAMPLES")
    train_misfire_grace: int = Field(default=6 * 3600, ge=1, validation_alias="EMBER_TRAIN_MISFIRE_GRACE")
    model_sync_seconds: int = Field(default=60, ge=1, validation_alias="EMBER_MODEL_SYNC_SECONDS")
    stream_interval: float = Field(default=1.0, ge=0, validation_alias="EMBER_STREAM_INTERVAL")
    claim_heartbeat: float = Field(default=10.0, gt=0, validation_alias="EMBER_CLAIM_HEARTBEAT")
    max_queue: int = Field(default=16, ge=0, validation_alias="EMBER_MAX_QUEUE")
    kv_cache_tokens: int = Field(default=32_768, ge=256, validation_alias="EMBER_KV_CACHE_TOKENS")
    max_batch_tokens: int = Field(default=2048, ge=64, validation_alias="EMBER_MAX_BATCH_TOKENS")
    stop_loops: bool = Field(default=True, validation_alias="EMBER_STOP_LOOPS")
    digest_max_messages: int = Field(default=5000, ge=1, validation_alias="EMBER_DIGEST_MAX_MESSAGES")
    digest_quiet: Literal["skip", "note"] = Field(default="skip", validation_alias="EMBER_DIGEST_QUIET")
    digest_sync_seconds: int = Field(default=60, ge=1, validation_alias="EMBER_DIGEST_SYNC_SECONDS")
    # Where nightly training runs say what they trained on and what the gate decided; unset: nowhere.
    report_channel: str | None = Field(default=None, validation_alias="EMBER_REPORT_CHANNEL")
    # Without Slack settings, `ember run` serves a local workspace in the browser (bot/playground.py).
    playground: bool = Field(default=True, validation_alias="EMBER_PLAYGROUND")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=AliasChoices("EMBER_LOG_LEVEL")
    )

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token", "slack_app_token", "slack_signing_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            check_url(value)
        except DatabaseURLError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must start with xapp-")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known time zone") from None
        return value

    @field_validator("train_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"not a valid schedule ({exc})") from None
        return value

    @model_validator(mode="after")
    def _backend_needs_url(self) -> Settings:
        if self.llm_backend == "openai" and not self.llm_url:
            raise ValueError(f"EMBER_LLM_BACKEND=openai needs EMBER_LLM_URL: set it to {_HINTS['EMBER_LLM_URL']}")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ember.db').resolve()}"

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        """Serving Slack needs its tokens; `ember ask` and `ember chat` do not."""
        missing = ["SLACK_BOT_TOKEN"] if self.slack_bot_token is None else []
        if self.slack_signing_secret is None and not self.socket_mode:
            missing.append("SLACK_SIGNING_SECRET")
        if missing:
            lines = [f"{name} is not set: set it to {_HINTS[name]}." for name in missing]
            if self.slack_bot_token is None and not self.playground:
                lines.append("(EMBER_PLAYGROUND=false is set; unset it to try Ember in a local playground instead.)")
            raise SettingsError("\n".join(lines))


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's errors into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across settings; its message names them
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        name = _env_name(field)
        given = error.get("input")
        message = str(error["msg"]).removeprefix("Value error, ")
        shown = "" if name in _SECRETS else f" (got {given!r})"
        lines.append(f"{name} is invalid{shown}: {message}. Set it to {_HINTS.get(name, 'a valid value')}.")
    return "\n".join(lines)


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field.upper()
