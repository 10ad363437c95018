"""The eval gate: a candidate replaces the active version only if it measures better.

Three figures per model, each the mean per-token log-likelihood of an answer given its question
(rendered with the model's chat template, the way the bot prompts it):

- desirable:   held-out answers the team liked or corrected to. Higher is better; must improve.
- undesirable: held-out answers the team voted down. Lower is better; must not rise.
- general:     a fixed set of general questions shipped here. Must not fall beyond a tolerance, so
               a candidate that learned the team's facts by forgetting how to answer anything else
               is kept out.

Per-token means keep long and short answers comparable and the tolerances meaningful across models.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from models.dataset import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# The smallest rise in desirable log-likelihood (nats per token) that counts as better, not noise.
MIN_GAIN = 0.01
# How far (nats per token) the undesirable and general figures may move the wrong way.
UNDESIRABLE_TOLERANCE = 0.0
GENERAL_TOLERANCE = 0.05

GENERAL: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("What is 12 times 12?", "12 times 12 is 144."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("How many continents are there?", "There are seven continents."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("Which ocean is the largest?", "The Pacific Ocean is the largest ocean."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Write a short greeting for a new teammate.", "Welcome to the team! We're glad to have you here."),
    ("What is a synonym for happy?", "A synonym for happy is joyful."),
    ("In which year did World War II end?", "World War II ended in 1945."),
)


@dataclass(frozen=True)
class Figures:
    """Mean per-token log-likelihoods; None where the held-out slice has no answers of that kind."""

    desirable: float | None
    undesirable: float | None
    general: float


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    active: Figures
    candidate: Figures
    checks: dict[str, bool | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "active": asdict(self.active),
            "candidate": asdict(self.candidate),
            "checks": dict(self.checks),
        }


def general_examples(system_prompt: str) -> list[Example]:
    return [Example(question, answer, True, "general", system_prompt) for question, answer in GENERAL]


def measure(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    held_out: Sequence[Example],
    *,
    system_prompt: str,
    batch_size: int = 8,
) -> Figures:
    desirable = [example for example in held_out if example.desirable]
    undesirable = [example for example in held_out if not example.desirable]
    general = general_examples(system_prompt)
    return Figures(
        desirable=_mean(log_likelihoods(model, tokenizer, desirable, batch_size=batch_size)),
        undesirable=_mean(log_likelihoods(model, tokenizer, undesirable, batch_size=batch_size)),
        general=_mean(log_likelihoods(model, tokenizer, general, batch_size=batch_size)) or 0.0,
    )


def measure_version(location: str, held_out: Sequence[Example], *, system_prompt: str, device: str) -> Figures:
    """Load a version through the ordinary loading code (as `Engine.swap` will), measure, free it."""
    from models import loading

    model, tokenizer, _ = loading.load(loading.ModelSource(location, location), device)
    try:
        return measure(model, tokenizer, held_out, system_prompt=system_prompt)
    finally:
        del model
        free_memory()


def gate(
    active: Figures,
    candidate: Figures,
    *,
    min_gain: float = MIN_GAIN,
    undesirable_tolerance: float = UNDESIRABLE_TOLERANCE,
    general_tolerance: float = GENERAL_TOLERANCE,
) -> Verdict:
    checks: dict[str, bool | None] = {
        "desirable_improved": _improved(active.desirable, candidate.desirable, min_gain),
        "undesirable_not_improved": (
            None
            if active.undesirable is None or candidate.undesirable is None
            else candidate.undesirable <= active.undesirable + undesirable_tolerance
        ),
        "general_kept": candidate.general >= active.general - general_tolerance,
    }
    failed = [name for name, ok in checks.items() if ok is False]
    if checks["desirable_improved"] is None:
        failed.insert(0, "desirable_improved")
    reason = "better on every check" if not failed else "failed: " + ", ".join(failed)
    return Verdict(not failed, reason, active, candidate, checks)


def log_likelihoods(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *, batch_size: int = 8
) -> list[float]:
    """Mean per-token log-probability of each example's completion, given its prompt."""
    import torch

    encoded = [_encode(tokenizer, example) for example in examples]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            scores.extend(_score_batch(model, encoded[start : start + batch_size], int(pad), device))
    return scores


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _encode(tokenizer: PreTrainedTokenizerBase, example: Example) -> tuple[list[int], int]:
    """Token ids of prompt + completion, and where the completion starts (as TRL tokenizes for training)."""
    prompt = _ids(tokenizer.apply_chat_template(example.prompt(), add_generation_prompt=True, tokenize=True))
    full = _ids(
        tokenizer.apply_chat_template(
            [*example.prompt(), {"role": "assistant", "content": example.completion}], tokenize=True
        )
    )
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    return full, start


def _ids(rendered: Any) -> list[int]:
    if isinstance(rendered, dict) or hasattr(rendered, "keys"):
        rendered = rendered["input_ids"]
    return [int(token) for token in rendered]


def _score_batch(
    model: PreTrainedModel, batch: Sequence[tuple[list[int], int]], pad: int, device: torch.device
) -> list[float]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        targets[row, max(start, 1) : len(ids)] = True
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    token_logprobs = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
    mask = targets[:, 1:].to(device)
    sums = (token_logprobs * mask).sum(-1)
    counts = mask.sum(-1).clamp(min=1)
    return [float(value) for value in (sums / counts).cpu()]


def _improved(before: float | None, after: float | None, min_gain: float) -> bool | None:
    if before is None or after is None:
        return None
    return after >= before + min_gain


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
