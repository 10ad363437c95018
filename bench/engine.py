"""Engine throughput and latency: Ember's engine beside plain transformers, in one run.

    python -m bench.engine                 # tiny model and the packaged SmolLM2-135M, CPU
    python -m bench.engine --models tiny   # just the tiny one
    python -m bench.engine --gpu           # ~1.5B random model with Qwen2-1.5B's shape, on CUDA

For 1, 4 and 16 concurrent requests (all submitted at once, prompts of mixed lengths, greedy,
the same max_new_tokens), it measures:
  (a) loop      transformers `generate`, one request at a time (what a naive bot does)
  (b) batch     transformers `generate_batch` with all requests known up front
  (c) ember     Ember's engine, each request from its own thread, as Slack workers call it
Latency counts from submission (waiting included); TTFT is time to the first generated token.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.streamers import BaseStreamer

from models import loading
from models.engine import PAGE_SIZE, Engine, EngineConfig
from models.prompt import render

CACHE_TOKENS = 65_536
BATCH_TOKENS = 4096
QUESTIONS = [
    "What is the capital of France?",
    "Summarise our deploy checklist: build, test, tag, push, announce, and watch the dashboards for an hour.",
    "How do I reset my VPN password?",
    "Write a short note to the team about the office move next week, mentioning parking and desks.",
]


@dataclass
class Run:
    wall: float
    tokens: int
    latencies: list[float]
    ttfts: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies)
        ttft = sorted(self.ttfts)
        return (
            f"{self.tokens / self.wall:9.1f} {_pct(lat, 50):8.2f} {_pct(lat, 95):8.2f} "
            f"{_pct(ttft, 50):8.2f} {_pct(ttft, 95):8.2f}"
        )


def _pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def prompts(tokenizer: PreTrainedTokenizerBase, count: int) -> list[list[int]]:
    out = []
    for i in range(count):
        text = QUESTIONS[i % len(QUESTIONS)] + " Context: " + "the build failed again. " * (i * 5 % 23)
        out.append(render(tokenizer, [{"role": "user", "content": text}]))
    return out


class _FirstToken(BaseStreamer):
    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:  # the first put is the prompt
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def run_loop(model: torch.nn.Module, batch: list[list[int]], max_new: int) -> Run:
    start = time.perf_counter()
    latencies, ttfts, tokens = [], [], 0
    for ids in batch:
        streamer = _FirstToken()
        tensor = torch.tensor([ids], device=model.device)
        out = model.generate(  # type: ignore[operator]
            tensor,
            attention_mask=torch.ones_like(tensor),
            max_new_tokens=max_new,
            do_sample=False,
            streamer=streamer,
        )
        tokens += out.shape[1] - len(ids)
        latencies.append(time.perf_counter() - start)
        ttfts.append((streamer.first or time.perf_counter()) - start)
    return Run(time.perf_counter() - start, tokens, latencies, ttfts)


def run_generate_batch(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, batch: list[list[int]], max_new: int
) -> Run:
    config = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    start = time.perf_counter()
    # The same paged-cache size as Ember's engine, and a manager kept between calls: left to its defaults,
    # generate_batch sizes a cache to most of free memory on every call, which costs seconds each time.
    outputs = model.generate_batch(  # type: ignore[operator]
        batch,
        generation_config=config,
        record_timestamps=True,
        persistent_manager=True,
        continuous_batching_config=ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=CACHE_TOKENS // PAGE_SIZE,
            max_batch_tokens=BATCH_TOKENS,
            allow_block_sharing=False,
        ),
    )
    wall = time.perf_counter() - start
    latencies, ttfts, tokens = [], [], 0
    for output in outputs.values():
        stamps = output.timestamps or [wall]
        tokens += len(output.generated_tokens)
        latencies.append(stamps[-1] - start if stamps[-1] > start else wall)
        ttfts.append(stamps[0] - start if stamps[0] > start else wall)
    return Run(wall, tokens, latencies, ttfts)


def run_ember(engine: Engine, tokenizer: PreTrainedTokenizerBase, batch: list[list[int]], max_new: int) -> Run:
    texts = [tokenizer.decode(ids) for ids in batch]
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(batch) + 1)

    def one(i: int) -> None:
        messages = [{"role": "user", "content": _question_of(texts[i])}]
        gate.wait()
        began = time.perf_counter()
        stream = engine.stream(messages, max_new_tokens=max_new)
        for _ in stream:
            pass
        c = stream.completion
        with lock:
            results.append((time.perf_counter() - began, c.time_to_first_token or 0.0, c.completion_tokens))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batch))]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return Run(wall, sum(r[2] for r in results), [r[0] for r in results], [r[1] for r in results])


def _question_of(rendered: str) -> str:
    # prompts() renders a chat; the engine renders its own, so hand it the user's words back.
    return rendered.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]


def tiny_model(directory: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    from tests.support.models import build_tiny_model

    return build_tiny_model(directory, tokenizer)


def gpu_model(directory: Path) -> Path:
    """A randomly initialised model with Qwen2-1.5B's shape (no download), saved like a real one."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(loading.convert_packaged(directory.parent / "data"))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=-1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def bench_model(
    name: str, path: Path, device: str, max_new: int, levels: list[int], print_row: Callable[[str], None]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(path)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    loop_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    batch_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    engine = Engine.load(
        loading.ModelSource(str(path), name),
        device=device,
        config=EngineConfig(kv_cache_tokens=CACHE_TOKENS, max_batch_tokens=BATCH_TOKENS),
    )
    params = sum(p.numel() for p in loop_model.parameters()) / 1e6
    print_row(f"\n{name} ({params:.0f}M parameters, {device}, max_new_tokens={max_new})")
    print_row(f"{'conc':>4} {'system':<7} {'tok/s':>9} {'p50 s':>8} {'p95 s':>8} {'ttft50':>8} {'ttft95':>8}  vs loop")
    warm = prompts(tokenizer, 2)
    run_loop(loop_model, warm[:1], 4)
    run_generate_batch(batch_model, tokenizer, warm, 4)
    run_ember(engine, tokenizer, warm, 4)
    with torch.inference_mode():
        for level in levels:
            batch = prompts(tokenizer, level)
            runs = {
                "loop": run_loop(loop_model, batch, max_new),
                "batch": run_generate_batch(batch_model, tokenizer, batch, max_new),
                "ember": run_ember(engine, tokenizer, batch, max_new),
            }
            base = runs["loop"].tokens / runs["loop"].wall
            for system, run in runs.items():
                speedup = (run.tokens / run.wall) / base
                print_row(f"{level:>4} {system:<7} {run.row()}  {speedup:5.2f}x")
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--gpu", action="store_true", help="a ~1.5B model on CUDA instead")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--levels", default="1,4,16")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
        + (f", {torch.cuda.get_device_name()}" if args.gpu else "")
    )
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.gpu:
            bench_model("qwen2-1.5b-shape-random", gpu_model(root / "gpu"), "cuda", args.max_new_tokens, levels, print)
            return
        for name in args.models.split(","):
            if name == "tiny":
                tokenizer = AutoTokenizer.from_pretrained(loading.convert_packaged(root / "data"))
                path = tiny_model(root / "tiny", tokenizer)
            else:
                path = loading.convert_packaged(root / "data")
            bench_model(name, path, "cpu", args.max_new_tokens, levels, print)


if __name__ == "__main__":
    main()
