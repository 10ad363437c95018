"""One place builds everything: settings -> database -> engine -> QA handler -> Bolt app -> transport.

`Ember.build(settings)` returns a running-ready application; `start()` serves in the background,
`serve()` serves until SIGINT/SIGTERM, `stop()` lets answers in flight finish and frees the model.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.app import build_bolt_app, check_slack, web_client
from bot.claim_keeper import ClaimKeeper, instance_id
from bot.digest_jobs import DigestJobs
from bot.metrics import Metrics
from bot.scheduler import Scheduler
from bot.server import EmberWSGI, HttpServer
from bot.settings import Settings, SettingsError
from db import Database
from handlers.qa.handler import QAHandler
from handlers.qa.recall import Recall
from handlers.slack.digests import DigestRunner
from handlers.slack.services import Services
from models import loading
from models.base import LLM
from models.engine import Engine, EngineConfig

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url)
    try:
        database.upgrade()
    except OperationalError as exc:
        database.close()
        where = make_url(database.url).render_as_string(hide_password=True)
        raise SettingsError(f"EMBER_DATABASE_URL: cannot open the database at {where}: {exc.orig}") from None
    return database


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_context_tokens=settings.max_context_tokens,
        kv_cache_tokens=settings.kv_cache_tokens,
        max_batch_tokens=settings.max_batch_tokens,
        stop_loops=settings.stop_loops,
    )


def load_engine(settings: Settings, database: Database | None = None) -> Engine:
    """EMBER_MODEL, or the fine-tune of it the registry says is active (promoted by a nightly run)."""
    source = loading.resolve(settings.model, settings.data_dir)
    if database is not None:
        from models import registry

        with database.session() as session:
            source = registry.serving_source(session, base=source)
    return Engine.load(source, device=settings.device, config=engine_config(settings))


def build_llm(settings: Settings, database: Database | None = None) -> LLM:
    """The local engine, or a client of an OpenAI-compatible server (vLLM, SGLang) for teams past one GPU."""
    if settings.llm_backend == "local":
        return load_engine(settings, database)
    from models.openai_backend import OpenAIEngine

    assert settings.llm_url is not None  # Settings checks it is set for this backend
    return OpenAIEngine(
        settings.llm_url,
        model=settings.llm_model or settings.model,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        context_window=settings.max_context_tokens or None,
        timeout=settings.answer_timeout,
        supports_tools=settings.llm_tools,
    )


def open_recall(settings: Settings, database: Database) -> Recall | None:
    """Day-time memory: MiniLM embeddings (packaged, offline) over the memories table."""
    if not settings.memory:
        return None
    from models.embeddings import Embedder

    return Recall.open(database, Embedder.load(device="cpu"))


def build_qa(
    settings: Settings,
    database: Database,
    engine: LLM,
    metrics: Metrics | None = None,
    recall: Recall | None = None,
) -> QAHandler:
    return QAHandler(
        recall=recall,
        db=database,
        engine=engine,
        system_prompt=settings.system_prompt,
        max_new_tokens=settings.max_new_tokens,
        answer_timeout=settings.answer_timeout,
        observer=metrics.observe if metrics is not None else None,
    )


# Bolt's listener threads; each holds a request only for a listener's quick part.
LISTENER_THREADS = 16
SOCKET_PING_SECONDS = 2.0


@dataclass
class Ember:
    settings: Settings
    db: Database
    engine: LLM
    services: Services
    http: HttpServer
    executor: ThreadPoolExecutor  # answers (EMBER_WORKERS at once)
    metrics: Metrics
    bolt: App
    socket_handler: Any = None
    owns_engine: bool = True
    scheduler: Scheduler | None = None
    digest_jobs: DigestJobs | None = None
    # The last training run the learning report posted, so a night without a run of its own posts nothing.
    reported_run: int | None = None
    # Bolt's listeners: short work only (acks, votes, modals); answers move on to `executor`.
    listeners: ThreadPoolExecutor | None = None
    # Heartbeat of this process's claims on events; takes over those of processes that died.
    claims: ClaimKeeper | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, settings: Settings, *, engine: LLM | None = None, web: WSGIApplication | None = None) -> Ember:
        """Everything for `settings`; `web` serves the paths Ember's HTTP server does not (the playground)."""
        settings.require_slack()
        # Bad Slack credentials are found before the model spends seconds loading.
        check_slack(settings)
        database = open_database(settings)
        owns_engine = engine is None
        try:
            engine = engine or build_llm(settings, database)
        except BaseException:
            database.close()
            raise
        try:
            return cls._assemble(settings, database, engine, owns_engine, web)
        except BaseException:
            if owns_engine:
                engine.close()
            database.close()
            raise

    @classmethod
    def _assemble(
        cls, settings: Settings, database: Database, engine: LLM, owns_engine: bool, web: WSGIApplication | None
    ) -> Ember:
        metrics = Metrics(queue_depth=lambda: engine.queue_depth, model_version=lambda: engine.version)
        recall = open_recall(settings, database)
        services = Services(
            db=database,
            qa=build_qa(settings, database, engine, metrics, recall),
            recall=recall,
            max_queue=settings.max_queue,
            stream_interval=settings.stream_interval,
            owner=instance_id(),
        )
        executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="ember-answer")
        services.background = executor.submit
        # A button click must be acked within 3 s, from a free listener thread: answers, which take
        # minutes, never hold these (handlers.slack.answering hands them to `executor`).
        listeners = ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="ember-listener")
        bolt = build_bolt_app(settings, services, executor=listeners)
        assert services.owner is not None
        claims = ClaimKeeper(
            database, bolt, owner=services.owner, interval=settings.claim_heartbeat, lease=services.event_lease
        )
        services.owner_stale_after = claims.stale_after
        # Digests read and post with the app's own client (its retry handlers honour 429 Retry-After).
        services.digests = DigestRunner(
            db=database,
            engine=engine,
            client=bolt.client,
            max_messages=settings.digest_max_messages,
            quiet=settings.digest_quiet,
            default_timezone=settings.timezone,
            # A digest's map prompts queue behind each other on a CPU; an answer's deadline would cut them.
            timeout=None,
        )
        services.digest_timezone = settings.timezone
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        # In Socket Mode Slack's requests come over the socket; HTTP still serves /healthz.
        wsgi = EmberWSGI(
            None if settings.socket_mode else bolt,
            secret,
            health=lambda: _health(engine),
            metrics=metrics.render,
            fallback=web,
        )
        # A page holds one thread per open tab for its live updates.
        http = HttpServer(wsgi, host=settings.host, port=settings.port, threads=8 if web is None else 24)
        socket_handler = None
        if settings.socket_mode:
            from bot.socket_mode import CheckedSocketModeHandler

            assert settings.slack_app_token is not None
            # Pinged every 2 s, a connection that stops answering is dropped and reopened within about
            # 10 s (slack_sdk calls it stale after 4 missed pongs); the default of 10 s took ~55 s.
            socket_handler = CheckedSocketModeHandler(
                bolt,
                settings.slack_app_token.get_secret_value(),
                web_client=web_client(settings),
                ping_interval=SOCKET_PING_SECONDS,
            )
        return cls(
            settings,
            database,
            engine,
            services,
            http,
            executor,
            metrics,
            bolt,
            socket_handler,
            owns_engine,
            listeners=listeners,
            claims=claims,
        )

    @property
    def url(self) -> str:
        return f"http://{self.http.host}:{self.http.port}"

    def start(self) -> None:
        """Start the scheduler, HTTP and Socket Mode; if any fails, what started is stopped again (the
        model's threads included), so the process can exit with the error instead of hanging."""
        try:
            if self.settings.scheduler:
                self.scheduler = Scheduler(
                    self.settings, sync_model=self.sync_model, after_training=self.report_training
                )
                self.scheduler.start()
                self._start_digests(self.scheduler)
            if self.claims is not None:
                # Before new events arrive: what a dead process left is answered first.
                self.claims.start()
            self.http.start()
            if self.socket_handler is not None:
                self.socket_handler.connect()
                log.info("connected to Slack over Socket Mode")
        except BaseException:
            self.stop()
            raise

    def serve(self) -> None:
        """Serve until SIGINT or SIGTERM, then shut down cleanly."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self._stopped.set())
        self.start()
        log.info("Ember is up: model %s, %s", self.engine.version, "Socket Mode" if self.socket_handler else self.url)
        self._stopped.wait()
        self.stop()

    def swap_model(self, location: str, *, version: str) -> None:
        """Serve new questions from other weights; questions being answered finish on the old ones."""
        try:
            self.engine.swap(location, version=version)
        except Exception:
            self.metrics.swaps.labels("failed").inc()
            raise
        self.metrics.swaps.labels("ok").inc()
        self.refresh_homes()

    def refresh_homes(self) -> None:
        """Home tabs show the served model and the last runs: publish the open ones again."""
        from handlers.slack.home import refresh_homes

        try:
            refresh_homes(self.services, self.bolt.client)
        except Exception:
            log.exception("could not refresh the home tabs")

    def sync_model(self) -> None:
        """Serve the version the registry says is active, if it is not the one being served."""
        from models import registry

        with self.db.session() as session:
            target = registry.pending_swap(session, serving=self.engine.version)
        if target is None:
            return
        try:
            self.swap_model(target.location, version=target.version)
        except Exception:
            log.exception("could not swap to %s; still serving %s", target.version, self.engine.version)

    def _start_digests(self, scheduler: Scheduler) -> None:
        """Only the process with the scheduler runs digests; a change made here reaches its jobs at once."""
        assert self.services.digests is not None
        self.digest_jobs = DigestJobs(
            scheduler.jobs, self.db, self.services.digests, sync_seconds=self.settings.digest_sync_seconds
        )
        self.digest_jobs.start()
        self.services.on_digests_changed = self.digest_jobs.sync

    def report_training(self) -> None:
        """Post what the latest training run did to EMBER_REPORT_CHANNEL, once per run."""
        self.refresh_homes()
        if not self.settings.report_channel:
            return
        from bot import report

        reported = report.report_new_run(
            self.db,
            self.bolt.client,
            channel=self.settings.report_channel,
            serving=self.engine.version,
            last_reported=self.reported_run,
        )
        if reported is not None:
            self.reported_run = reported

    def stop(self) -> None:
        if self.claims is not None:
            self.claims.drain()
        if self.digest_jobs is not None:
            self.digest_jobs.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.socket_handler is not None:
            _close_socket_mode(self.socket_handler)
        self.http.stop()
        if self.listeners is not None:
            self.listeners.shutdown(wait=True)
        # Questions already taken on are answered before the model goes away.
        self.executor.shutdown(wait=True)
        if self.claims is not None:
            self.claims.stop()
        if self.owns_engine:
            self.engine.close()
        self.db.close()
        log.info("Ember stopped")


def _close_socket_mode(handler: Any) -> None:
    """Close Socket Mode without hanging. slack_sdk's close() can race its receive thread: a thread about
    to start reading clears the "terminated" flag close() has just set, then reads a closed connection
    forever while close() waits for it. Setting the flag again until close() returns ends that loop."""
    closer = threading.Thread(target=handler.close, name="ember-socket-close", daemon=True)
    closer.start()
    while closer.is_alive():
        closer.join(timeout=0.5)
        handler.client.current_session_state.terminated = True


def _health(engine: LLM) -> dict[str, Any]:
    return {"status": "ok", "model_version": engine.version, "queue_depth": engine.queue_depth}
