"""The eval gate: a candidate replaces the active version only if it measures better.

Three figures per model, each the mean per-token log-likelihood of an answer given its question
(rendered with the model's chat template, the way the bot prompts it):

- paraphrased: the facts trained on, asked in words training never saw (a paraphrase of each taught
               question, held back from training). What people meet the morning after; must improve.
- desirable:   held-out answers the team liked or corrected to, asked as they were and in new words
               (paraphrases the resident model wrote, see models.augment). Must improve when there is
               no paraphrased figure; beside one it is reported and does not decide, because a held-out
               correction is a fact the run never saw (see gate).
- undesirable: held-out answers the team voted down. Lower is better; must not rise.
- general:     a fixed set of general questions shipped here. Must not fall beyond a tolerance, so
               a candidate that learned the team's facts by forgetting how to answer anything else
               is kept out.

Per-token means keep long and short answers comparable and the tolerances meaningful across models.
The general set is also answered greedily, and the share answered right must not drop beyond a
tolerance either (likelihood of reference sentences can rise while answers get worse).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from models.dataset import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# The smallest rise in desirable log-likelihood (nats per token) that counts as better, not noise.
MIN_GAIN = 0.01
# How far (nats per token) the undesirable figure may move the wrong way.
UNDESIRABLE_TOLERANCE = 0.0
# How many of the general questions (as a fraction) the candidate may answer wrong that the active
# version answered right. "General kept" is judged on the answers themselves. The likelihood of the
# fixed reference sentences (Figures.general) is reported but does not decide, because it misfires
# both ways: a fine-tune that answers everything in the team's short "X is Y." style makes those
# sentences likelier while getting more wrong, and on the learning benchmark a candidate whose
# likelihood fell 0.45 nats/token kept 9 of the gate's 10 right answers and improved on the
# benchmark's own 30 general questions (70.0% -> 73.3%).
# Of the 40 questions below, 0.05 is two answers: with 20, one answer either way decided a run.
GENERAL_ACCURACY_TOLERANCE = 0.05

# (question, reference answer, words any of which a right greedy answer contains). Kept apart from
# the learning benchmark's general questions, so that the benchmark measures what the gate did not
# select for.
GENERAL: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of Australia?", "The capital of Australia is Canberra.", ("canberra",)),
    ("What is the capital of Russia?", "The capital of Russia is Moscow.", ("moscow",)),
    ("What is the capital of China?", "The capital of China is Beijing.", ("beijing",)),
    ("How many legs does a dog have?", "A dog has four legs.", ("four", "4")),
    ("How many sides does a square have?", "A square has four sides.", ("four", "4")),
    ("What is 5 plus 3?", "5 plus 3 is 8.", ("eight", "8")),
    ("How many seconds are in a minute?", "There are 60 seconds in a minute.", ("sixty", "60")),
    ("What color are ripe bananas?", "Ripe bananas are yellow.", ("yellow",)),
    ("What color is grass?", "Grass is green.", ("green",)),
    ("Which planet do we live on?", "We live on Earth.", ("earth",)),
    ("What is the natural satellite of the Earth called?", "The Earth's natural satellite is the Moon.", ("moon",)),
    (
        "Who was the first President of the United States?",
        "George Washington was the first President.",
        ("washington",),
    ),
    ("What language is mainly spoken in France?", "French is mainly spoken in France.", ("french",)),
    ("Which animal says moo?", "A cow says moo.", ("cow",)),
    (
        "What do caterpillars turn into?",
        "Caterpillars turn into butterflies or moths.",
        ("butterfly", "butterflies", "moth", "moths"),
    ),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", ("au",)),
    ("What is the main ingredient in guacamole?", "The main ingredient in guacamole is avocado.", ("avocado",)),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels.", ("two", "2")),
    ("What is the opposite of up?", "The opposite of up is down.", ("down",)),
    ("How many days are in a leap year?", "A leap year has 366 days.", ("366",)),
    ("What is the capital of Ireland?", "The capital of Ireland is Dublin.", ("dublin",)),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi.", ("nairobi",)),
    ("What is the capital of Thailand?", "The capital of Thailand is Bangkok.", ("bangkok",)),
    ("What is 3 times 4?", "3 times 4 is 12.", ("twelve", "12")),
    ("What is 20 minus 5?", "20 minus 5 is 15.", ("fifteen", "15")),
    ("How many legs does a cat have?", "A cat has four legs.", ("four", "4")),
    ("How many minutes are in half an hour?", "There are 30 minutes in half an hour.", ("thirty", "30")),
    ("What is the first month of the year?", "January is the first month of the year.", ("january",)),
    ("What do you call frozen water?", "Frozen water is called ice.", ("ice",)),
    ("What is the opposite of day?", "The opposite of day is night.", ("night",)),
    ("What is the opposite of big?", "The opposite of big is small.", ("small", "little")),
    ("Which animal barks?", "A dog barks.", ("dog",)),
    ("What do birds use to fly?", "Birds use their wings to fly.", ("wing", "wings")),
    ("What is the largest land animal?", "The largest land animal is the elephant.", ("elephant",)),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.", ("mercury",)),
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice.", ("austen",)),
    ("What language is mainly spoken in Germany?", "German is mainly spoken in Germany.", ("german",)),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron is Fe.", ("fe",)),
    ("Which instrument has six strings?", "The guitar has six strings.", ("guitar",)),
    ("What do you use to write on a blackboard?", "You write on a blackboard with chalk.", ("chalk",)),
)
# Greedy answers to GENERAL are checked for their words; this many tokens is room for a short answer.
GENERAL_ANSWER_TOKENS = 32


@dataclass(frozen=True)
class Figures:
    """Mean per-token log-likelihoods; None where the held-out slice has no answers of that kind."""

    desirable: float | None
    undesirable: float | None
    general: float
    general_accuracy: float
    paraphrased: float | None = None  # absent from older records, and where no paraphrase was written


@dataclass(frozen=True)
class Generated:
    text: str
    finished: bool  # ended with an end-of-turn token, not cut off at max_new_tokens


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
    return [Example(question, answer, True, "general", system_prompt) for question, answer, _ in GENERAL]


def measure(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    held_out: Sequence[Example],
    *,
    system_prompt: str,
    paraphrased: Sequence[Example] = (),
    batch_size: int = 8,
) -> Figures:
    desirable = [example for example in held_out if example.desirable]
    undesirable = [example for example in held_out if not example.desirable]
    general = general_examples(system_prompt)
    return Figures(
        desirable=_mean(log_likelihoods(model, tokenizer, desirable, batch_size=batch_size)),
        undesirable=_mean(log_likelihoods(model, tokenizer, undesirable, batch_size=batch_size)),
        general=_mean(log_likelihoods(model, tokenizer, general, batch_size=batch_size)) or 0.0,
        general_accuracy=general_accuracy(model, tokenizer, system_prompt=system_prompt),
        paraphrased=_mean(log_likelihoods(model, tokenizer, paraphrased, batch_size=batch_size)),
    )


def general_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, system_prompt: str) -> list[str]:
    """The greedy answers to the GENERAL questions, in their order."""
    prompts = [example.prompt() for example in general_examples(system_prompt)]
    return [answer.text for answer in generate(model, tokenizer, prompts, max_new_tokens=GENERAL_ANSWER_TOKENS)]


def general_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, system_prompt: str) -> float:
    """The share of GENERAL questions whose greedy answer contains one of the expected words."""
    answers = general_answers(model, tokenizer, system_prompt=system_prompt)
    right = [says(answer, words) for answer, (_, _, words) in zip(answers, GENERAL, strict=True)]
    return sum(right) / len(right)


def says(answer: str, words: Sequence[str]) -> bool:
    """Whether the answer contains one of the words as a whole word ("au" in "Au", not in "because")."""
    return any(re.search(rf"\b{re.escape(word)}\b", answer, re.IGNORECASE) for word in words)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[dict[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> list[Generated]:
    """Greedy answers, batched with left padding (the prompts' ends line up where generation starts)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    stops = set(eos) if isinstance(eos, list) else {eos if eos is not None else tokenizer.eos_token_id}
    device = next(model.parameters()).device
    answers: list[Generated] = []
    for start in range(0, len(prompts), batch_size):
        rendered = [
            _ids(tokenizer.apply_chat_template(list(p), add_generation_prompt=True, tokenize=True))
            for p in prompts[start : start + batch_size]
        ]
        input_ids, attention = left_padded(rendered, int(pad), device)
        width = input_ids.shape[1]
        with torch.inference_mode():
            output: Any = cast(Any, model).generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        for row in output:
            new = [int(token) for token in row[width:]]
            text = str(tokenizer.decode(new, skip_special_tokens=True)).strip()
            answers.append(Generated(text, finished=bool(stops.intersection(new))))
    return answers


def left_padded(rows: Sequence[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left to one width, and their attention mask: batched generation
    starts writing where every prompt ends."""
    import torch

    width = max(len(ids) for ids in rows)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows], device=device)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows], device=device)
    return input_ids, attention


def measure_version(
    location: str,
    held_out: Sequence[Example],
    *,
    system_prompt: str,
    device: str,
    paraphrased: Sequence[Example] = (),
) -> Figures:
    """Load a version through the ordinary loading code (as `Engine.swap` will), measure, free it."""
    from models import loading

    model, tokenizer, _ = loading.load(loading.ModelSource(location, location), device)
    try:
        return measure(model, tokenizer, held_out, system_prompt=system_prompt, paraphrased=paraphrased)
    finally:
        del model
        free_memory()


def gate(
    active: Figures,
    candidate: Figures,
    *,
    min_gain: float = MIN_GAIN,
    undesirable_tolerance: float = UNDESIRABLE_TOLERANCE,
    general_accuracy_tolerance: float = GENERAL_ACCURACY_TOLERANCE,
) -> Verdict:
    checks: dict[str, bool | None] = {
        "desirable_improved": _improved(active.desirable, candidate.desirable, min_gain),
        "paraphrased_improved": _improved(active.paraphrased, candidate.paraphrased, min_gain),
        "undesirable_not_improved": (
            None
            if active.undesirable is None or candidate.undesirable is None
            else candidate.undesirable <= active.undesirable + undesirable_tolerance
        ),
        "general_answers_kept": candidate.general_accuracy >= active.general_accuracy - general_accuracy_tolerance,
    }
    # Held-out feedback decides only where no taught fact could be asked in new words. With
    # corrections (one per fact, each a different fact) the held-out slice is facts the run was never
    # shown, and a run that learns the taught ones makes those less likely, not more: on the learning
    # benchmark (one correction per fact, 4 epochs) taught facts asked in new words went -3.52 -> -0.13
    # nats/token and held-out paraphrases 0% -> 56% right, while held-out feedback fell -3.45 -> -3.72.
    decisive = dict(checks)
    if checks["paraphrased_improved"] is not None:
        del decisive["desirable_improved"]
    elif checks["desirable_improved"] is None:
        decisive["desirable_improved"] = False  # nothing liked held out and nothing paraphrased: no evidence
    failed = [name for name, ok in decisive.items() if ok is False]
    reason = "better on every check" if not failed else "failed: " + ", ".join(failed)
    return Verdict(not failed, reason, active, candidate, checks)


# The gate's figures in the order people read them: (key, what it is in plain words, its check).
FIGURES: tuple[tuple[str, str, str | None], ...] = (
    ("paraphrased", "taught facts asked in new words", "paraphrased_improved"),
    ("desirable", "held-out liked answers and corrections", "desirable_improved"),
    ("undesirable", "held-out disliked answers", "undesirable_not_improved"),
    ("general_accuracy", "general questions answered right", "general_answers_kept"),
    ("general", "general reference answers", None),
)
_PLAIN = {
    "paraphrased_improved": ("likelier", "not likelier"),
    "desirable_improved": ("likelier", "not likelier"),
    "undesirable_not_improved": ("not likelier", "likelier"),
    "general_answers_kept": ("kept", "fewer"),
}


def plain_figures(metrics: dict[str, Any]) -> list[str]:
    """The gate's figures as a person reads them: "taught facts asked in new words: -3.41 -> -1.20, likelier".

    Likelihoods are mean log-probabilities per token of the right answer (closer to 0: likelier);
    general answers are the share of the gate's general questions answered right.
    """
    before, after = metrics.get("active") or {}, metrics.get("candidate") or {}
    checks = metrics.get("checks") or {}
    lines = []
    for key, label, check in FIGURES:
        old, new = before.get(key), after.get(key)
        if not isinstance(old, int | float) or not isinstance(new, int | float):
            continue
        shown = f"{old:.0%} -> {new:.0%}" if key == "general_accuracy" else f"{old:.2f} -> {new:.2f}"
        passed = checks.get(check) if check else None
        said = "" if passed is None or check not in _PLAIN else ", " + _PLAIN[check][0 if passed else 1]
        if check == "desirable_improved" and checks.get("paraphrased_improved") is not None:
            said += " (not judged: the taught facts are judged in new words)"
        lines.append(f"{label}: {shown}{said}")
    return lines


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
