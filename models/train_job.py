"""One training run, as its own process: `python -m models.train_job` (what `ember train` and the
nightly job start), so the bot keeps answering while it trains.

    feedback -> training set -> (too small? skipped)
      -> augmentation: the serving model writes each taught fact in more phrasings (models.augment)
      -> LoRA + KTO into a staging directory
      -> eval gate (candidate vs active: held-out feedback, taught facts in new words, general set)
      -> rename staging into versions/ -> one transaction: register the version as active or rejected,
         and close the run's record

Nothing that serves or is stored changes before that last step: a crash or a kill anywhere earlier
leaves versions/, the registry and the feedback as they were. The next run finds what the dead one
left (a run still marked running, a staging directory, a version directory no row names) and clears
it before it starts. A lock file keeps two runs on one data directory from overlapping.

Exit status: 0 when the run was promoted, rejected or skipped; 1 when it failed; 75 when another run
holds the lock. The last line on stdout sums the run up.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import select

from db.schema import TrainingRun, utcnow
from db.session import Database
from models import dataset, registry
from models.dataset import Example, TrainingSet
from models.loading import ModelSource

if TYPE_CHECKING:
    from models.augment import Augmentation
    from models.evaluation import Figures, Verdict
    from models.training import TrainResult, TrainSettings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, 75
INTERRUPTED = "interrupted: the training process stopped before it finished (killed or crashed)"


@dataclass(frozen=True)
class JobConfig:
    data_dir: Path
    database_url: str
    system_prompt: str
    model: str = "default"
    device: str = "auto"
    include_private: bool = False
    min_examples: int = dataset.MIN_EXAMPLES
    holdout_fraction: float = dataset.HOLDOUT_FRACTION
    # TrainSettings fields to change from the device's defaults (epochs, learning_rate, ...).
    train: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    # CPU threads for torch (None: its default, one per core). On a CPU host that also serves, leave
    # the bot a core; on a busy host, oversubscribed threads slow training many times over.
    threads: int | None = None
    # Write each desirable example in more phrasings before training (models.augment).
    augment: bool = True


@dataclass(frozen=True)
class Outcome:
    status: str  # promoted, rejected, skipped, failed, busy
    run_id: int | None = None
    version: str | None = None
    summary: str = ""

    @property
    def exit_code(self) -> int:
        return {"failed": EXIT_FAILED, "busy": EXIT_BUSY}.get(self.status, EXIT_OK)


def run(config: JobConfig, *, out: TextIO | None = None) -> Outcome:
    """Run one training job to its end and return what became of it (never raises for a failed run)."""
    out = out or sys.stdout
    config.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(config.database_url)
    try:
        database.upgrade()
        with _lock(config.data_dir) as held:
            if not held:
                outcome = Outcome(
                    "busy", summary="ember train: another training run is in progress on this data directory"
                )
            else:
                recover(database, config.data_dir)
                outcome = _run_locked(database, config, out)
    finally:
        database.close()
    print(outcome.summary, file=out, flush=True)
    return outcome


def recover(database: Database, data_dir: Path) -> None:
    """Clear what a killed or crashed run left: its record says running, its files are half-written."""
    with database.session() as session:
        for stale in session.scalars(select(TrainingRun).where(TrainingRun.status == "running")):
            stale.status = "failed"
            stale.finished_at = utcnow()
            stale.detail = json.dumps({**_detail(stale), "error": INTERRUPTED})
        leftovers = registry.orphans(session, data_dir=data_dir)
    for directory in leftovers:
        shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(registry.staging_dir(data_dir), ignore_errors=True)


def _run_locked(database: Database, config: JobConfig, out: TextIO) -> Outcome:
    from models import loading

    base = loading.resolve(config.model, config.data_dir)
    run_id, active, root = _start(database, base)
    started = time.perf_counter()
    staging = registry.staging_dir(config.data_dir) / f"run-{run_id}"
    final: Path | None = None
    try:
        training_set = _build_set(database, config, run_id)
        shortfall = training_set.shortfall(config.min_examples)
        if shortfall is not None:
            return _skip(database, run_id, training_set, shortfall, started)
        trained = _train_and_judge(config, active.source, root.source, training_set, staging, out, run_id)
        with database.session() as session:
            version = registry.version_name(session, base=root.version, run_id=run_id)
        final = registry.versions_dir(config.data_dir) / version
        detail = _run_detail(training_set, trained, started)
        registry.write_metadata(staging, _metadata(version, active.version, root.source, run_id, detail))
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
        status = _register(database, run_id, version, final, active.version, trained, detail)
        return Outcome(status, run_id, version, _summary(run_id, status, version, training_set, trained, started))
    except BaseException as exc:  # a failed run must never leave half a version behind
        shutil.rmtree(staging, ignore_errors=True)
        if final is not None and _unregistered(database, final, config.data_dir):
            shutil.rmtree(final, ignore_errors=True)
        _fail(database, run_id, exc, started)
        return Outcome("failed", run_id, None, f"ember train: run {run_id} failed: {type(exc).__name__}: {exc}")


def _start(database: Database, base: ModelSource) -> tuple[int, registry.VersionInfo, registry.VersionInfo]:
    """Open the run's record; return it with the version to beat and the base to train from."""
    with database.session() as session:
        active = registry.ensure_base(session, base=base)
        root = registry.get(session, version=registry.root(session, version=active.version))
        assert root is not None  # ensure_base registered it
        record = TrainingRun(status="running", base_version=active.version, started_at=utcnow())
        session.add(record)
        session.flush()
        return record.id, active, root


def _build_set(database: Database, config: JobConfig, run_id: int) -> TrainingSet:
    with database.session() as session:
        training_set = dataset.build(
            session,
            system_prompt=config.system_prompt,
            include_private=config.include_private,
            holdout_fraction=config.holdout_fraction,
        )
        record = session.get(TrainingRun, run_id)
        assert record is not None
        record.examples = len(training_set.examples)
        record.desirable = training_set.desirable
        record.undesirable = training_set.undesirable
        record.detail = json.dumps({"data": training_set.counts()})
    return training_set


@dataclass(frozen=True)
class _Trained:
    settings: TrainSettings
    result: TrainResult
    verdict: Verdict
    anchors: int
    augmentation: dict[str, Any]


@dataclass(frozen=True)
class _Prepared:
    before: Figures
    gate_set: list[Example]  # held-out feedback, as asked and in new words
    paraphrased: list[Example]  # taught facts in words held back from training
    augmented: list[Example]
    record: dict[str, Any]


def _train_and_judge(
    config: JobConfig,
    active: ModelSource,
    root: ModelSource,
    training_set: TrainingSet,
    staging: Path,
    out: TextIO,
    run_id: int,
) -> _Trained:
    from models import evaluation, training
    from models.loading import pick_device

    device = pick_device(config.device)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    settings = training.TrainSettings.for_device(device, **config.train)
    prepared = _prepare(config, active, training_set, device, out, run_id)

    anchors = training.anchor_examples(
        root.location, system_prompt=config.system_prompt, count=settings.anchors, device=device
    )

    def announce(steps: int) -> None:
        print(
            f"ember train: run {run_id} started training: {len(training_set.train)} examples "
            f"(+{len(prepared.augmented)} augmented, +{len(anchors)} general anchors), {steps} steps, "
            f"from {root.version} on {device} ({len(training_set.held_out)} held out to judge it against "
            f"{active.version})",
            file=out,
            flush=True,
        )

    result = training.train(
        root.location,
        [*training_set.train, *prepared.augmented, *anchors],
        staging,
        device=device,
        settings=settings,
        progress=config.progress,
        on_begin=announce,
    )
    after = evaluation.measure_version(
        str(staging),
        prepared.gate_set,
        system_prompt=config.system_prompt,
        device=device,
        paraphrased=prepared.paraphrased,
    )
    verdict = evaluation.gate(prepared.before, after)
    return _Trained(settings, result, verdict, len(anchors), prepared.record)


def _prepare(
    config: JobConfig, active: ModelSource, training_set: TrainingSet, device: str, out: TextIO, run_id: int
) -> _Prepared:
    """With the serving model loaded once: augment the feedback, then measure the version to beat.

    Augmentation is a help, not a need: if it fails, the run trains on the feedback as it is.
    """
    from models import evaluation, loading

    model, tokenizer, _ = loading.load(ModelSource(active.location, active.location), device)
    try:
        augmentation: Augmentation | None = None
        held_out_words: list[Example] = []
        record: dict[str, Any] = {"enabled": config.augment}
        if config.augment:
            started = time.perf_counter()
            try:
                augmentation, held_out_words = _augment(model, tokenizer, training_set)
            except Exception as exc:
                log.warning("run %d: augmentation failed, training on the feedback as it is", run_id, exc_info=True)
                print(
                    f"ember train: run {run_id}: augmentation failed ({type(exc).__name__}: {exc}); "
                    "training on the feedback as it is",
                    file=out,
                    flush=True,
                )
                record["error"] = f"{type(exc).__name__}: {exc}"
            else:
                record.update(augmentation.summary(), held_out_paraphrases=len(held_out_words))
                print(
                    f"ember train: run {run_id} augmented {len(augmentation.records)} examples with "
                    f"{len(augmentation.examples)} more phrasings in {time.perf_counter() - started:.0f} s",
                    file=out,
                    flush=True,
                )
            record["seconds"] = round(time.perf_counter() - started, 1)
        gate_set = [*training_set.held_out, *held_out_words]
        paraphrased = augmentation.held_back if augmentation is not None else []
        before = evaluation.measure(
            model, tokenizer, gate_set, system_prompt=config.system_prompt, paraphrased=paraphrased
        )
    finally:
        del model
        evaluation.free_memory()
    return _Prepared(before, gate_set, paraphrased, augmentation.examples if augmentation else [], record)


def _augment(model: Any, tokenizer: Any, training_set: TrainingSet) -> tuple[Augmentation, list[Example]]:
    from models import augment

    return (
        augment.augment(model, tokenizer, training_set.train),
        augment.paraphrase_held_out(model, tokenizer, training_set.held_out),
    )


def _register(
    database: Database, run_id: int, version: str, path: Path, parent: str, trained: _Trained, detail: dict[str, Any]
) -> str:
    """The one step that changes what serves: the version row, its status and the run's record, together."""
    verdict = trained.verdict
    status = "promoted" if verdict.promote else "rejected"
    with database.session() as session:
        registry.add_candidate(session, version=version, path=path, parent=parent, metrics=verdict.as_dict())
        if verdict.promote:
            registry.promote(session, version=version)
        else:
            registry.reject(session, version=version)
        record = session.get(TrainingRun, run_id)
        assert record is not None
        record.status = status
        record.candidate_version = version
        record.loss = trained.result.loss
        record.detail = json.dumps(detail)
        record.finished_at = utcnow()
    return status


def _skip(database: Database, run_id: int, training_set: TrainingSet, reason: str, started: float) -> Outcome:
    with database.session() as session:
        record = session.get(TrainingRun, run_id)
        assert record is not None
        record.status = "skipped"
        record.detail = json.dumps({"data": training_set.counts(), "reason": reason, "seconds": _since(started)})
        record.finished_at = utcnow()
    return Outcome("skipped", run_id, None, f"ember train: run {run_id} skipped: {reason}")


def _fail(database: Database, run_id: int, exc: BaseException, started: float) -> None:
    with database.session() as session:
        record = session.get(TrainingRun, run_id)
        # Only a run still in progress: one whose outcome was committed keeps it.
        if record is not None and record.status == "running":
            record.status = "failed"
            error = f"{type(exc).__name__}: {exc}"
            record.detail = json.dumps({**_detail(record), "error": error, "seconds": _since(started)})
            record.finished_at = utcnow()


def _unregistered(database: Database, path: Path, data_dir: Path) -> bool:
    with database.session() as session:
        return path in registry.orphans(session, data_dir=data_dir)


def _run_detail(training_set: TrainingSet, trained: _Trained, started: float) -> dict[str, Any]:
    result = trained.result
    return {
        "data": training_set.counts(),
        "settings": trained.settings.as_dict(),
        "train": {
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "device": result.device,
            "desirable_weight": result.desirable_weight,
            "undesirable_weight": result.undesirable_weight,
            "anchors": trained.anchors,
        },
        "augmentation": trained.augmentation,
        "gate": trained.verdict.as_dict(),
        "seconds": _since(started),
    }


def _metadata(version: str, parent: str, root: ModelSource, run_id: int, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": version,
        "parent": parent,
        "base": root.version,
        "base_location": root.location,
        "adapter": registry.ADAPTER,
        "run_id": run_id,
        "created_at": utcnow().isoformat(),
        **detail,
    }


def _summary(
    run_id: int, status: str, version: str, training_set: TrainingSet, trained: _Trained, started: float
) -> str:
    loss = f"{trained.result.loss:.4f}" if trained.result.loss is not None else "n/a"
    return (
        f"ember train: run {run_id} {status} {version} ({trained.verdict.reason}); {len(training_set.examples)} "
        f"examples ({training_set.desirable} desirable, {training_set.undesirable} undesirable), loss {loss}, "
        f"{_since(started):.0f} s"
    )


def _detail(record: TrainingRun) -> dict[str, Any]:
    try:
        loaded = json.loads(record.detail) if record.detail else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


@contextmanager
def _lock(data_dir: Path) -> Iterator[bool]:
    """An OS lock on a file: released by the kernel when the holder dies, so a kill never leaves it held."""
    path = data_dir / "models" / "train.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (the scheduler stopping, `docker stop`) ends the run through the same path as an error,
    # so it is recorded as failed and its staging directory removed; SIGKILL is left to `recover`.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    config = JobConfig(
        data_dir=args.data_dir,
        database_url=args.database_url or f"sqlite:///{(args.data_dir / 'ember.db').resolve()}",
        system_prompt=args.system_prompt,
        model=args.model,
        device=args.device,
        include_private=args.include_private,
        min_examples=args.min_examples,
        holdout_fraction=args.holdout_fraction,
        train={name: getattr(args, name) for name in _TRAIN_ARGS if getattr(args, name) is not None},
        progress=not args.no_progress,
        threads=args.threads,
        augment=args.augment,
    )
    return run(config).exit_code


_TRAIN_ARGS = {
    "anchors": int,
    "sft_weight": float,
    "epochs": int,
    "learning_rate": float,
    "batch_size": int,
    "max_length": int,
    "lora_r": int,
    "beta": float,
}


def _parser() -> argparse.ArgumentParser:
    """Every setting comes as an argument: `ember train` and the nightly job pass the bot's own (see
    bot.scheduler.train_argv), so this process needs nothing of the bot's and never imports it."""
    parser = argparse.ArgumentParser(prog="python -m models.train_job", description="One Ember training run.")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", help="default: the SQLite file ember.db in the data directory")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--system-prompt", required=True, help="the system prompt the bot answers with")
    parser.add_argument("--include-private", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--min-examples", type=int, default=dataset.MIN_EXAMPLES)
    parser.add_argument("--holdout-fraction", type=float, default=dataset.HOLDOUT_FRACTION)
    for name, kind in _TRAIN_ARGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help="default: per device")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write each taught fact in more phrasings before training (default: on)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
