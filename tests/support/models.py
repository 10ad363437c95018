"""Tiny real models for tests: a Llama built from a config, with the packaged SmolLM2 tokenizer.

They are saved with `save_pretrained` and loaded through Ember's own loading code, like production.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from models.loading import PACKAGED_GGUF, packaged_gguf


def packaged_tokenizer() -> PreTrainedTokenizerBase:
    gguf = packaged_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=PACKAGED_GGUF)


def build_tiny_model(
    directory: Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int = 0,
    context: int = 512,
    initializer_range: float = 0.3,
) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # At the usual 0.02 a random tiny model answers every prompt with the same newline; wider weights
        # make its (meaningless) answers depend on the prompt and differ between seeds, which tests rely on.
        # Narrower (about 0.2 and below) and greedy answers fall into loops, as small real models' do.
        initializer_range=initializer_range,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
