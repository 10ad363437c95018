"""Each fact the team taught, in several phrasings, written by the resident model before training.

A fine-tune on one (question, answer) pair learns to answer that question; asked in other words, the
model still does not know the fact. Facts become extractable from new phrasings when training saw
them in several (Allen-Zhu and Li, "Physics of Language Models, Part 3.1"). So before each night's
training every desirable example (a correction, an upvoted answer) gets company:

- paraphrases: the question asked in other words;
- from the answer: a question the answer replies to, written from the answer alone, so that it often
  comes at the fact from the other side ("Who manages on-call?" -> "What does Marisol do?");
- a sentence: an answer that is a bare fragment ("Tallyho") is restated as a plain sentence that
  contains it, and the new questions are taught that sentence.

The model is the one that serves (no network, no second model). A 135M instruct model cannot follow
"rewrite this question", but it continues a few-shot text well enough; what it writes is filtered
(a question, short, new, about the same things) and whatever does not pass is dropped. What was
made is kept in the run's record, so a person can read what the model was taught.

`paraphrase_held_out` writes the same kind of paraphrases for the gate's held-out slice: never
trained on, they measure what people will meet, a known fact asked in new words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from models.dataset import Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# What gets augmented: what the team said is right.
SOURCES = frozenset({"correction", "upvote"})
PARAPHRASES = 3  # new questions per example, at most
FROM_ANSWER = 1
HOLD_BACK = 1  # paraphrases per example kept out of training, for the gate
SAMPLES = 6  # sampled continuations per prompt, before the filter
MAX_NEW_TOKENS = 28
MAX_WORDS = 24
TEMPERATURE = 0.8
TOP_P = 0.95

_PARAPHRASE_SHOTS = """Here are questions from a team chat, each followed by the same question asked in other words.

Question: Where is the coffee machine?
In other words: Where can I find the coffee maker?

Question: Who approves vacation requests?
In other words: Which person signs off on time off?

Question: What is the password policy?
In other words: What rules must our passwords follow?

Question: How do I book a meeting room?
In other words: What is the way to reserve a conference room?

Question: {question}
In other words:"""

_FROM_ANSWER_SHOTS = """Here are facts from a team chat, each followed by a question that the fact answers.

Fact: The coffee machine is in the kitchen on the second floor.
Question: Where can I get a coffee in the office?

Fact: Lena Hart approves vacation requests.
Question: What does Lena Hart do for people's time off?

Fact: Passwords must be at least 14 characters long.
Question: How long does a password have to be?

Fact: Meeting rooms are booked in Roomly.
Question: What is Roomly used for?

Fact: {answer}
Question:"""

_SENTENCE_SHOTS = """Here are short answers from a team chat, each restated as one full sentence.

Question: Where is the coffee machine?
Short answer: kitchen, 2nd floor
Full sentence: The coffee machine is in the kitchen on the second floor.

Question: Who approves vacation requests?
Short answer: Lena Hart
Full sentence: Lena Hart approves vacation requests.

Question: {question}
Short answer: {answer}
Full sentence:"""

_STOPWORD_TEXT = """a an the is are was were be been am do does did doing i me my we our us you your he she it its they
    them their what which who whom whose where when why how to of in on at for from by with about into
    and or but not no can could should would will shall may might must there here this that these those
    any some all get got make s t please tell know"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Augmented:
    """What was written for one example: the new questions and the answer they are taught."""

    question: str
    answer: str
    questions: tuple[str, ...]
    sentence: str | None = None  # the answer restated, when it was a fragment
    held_back: tuple[str, ...] = ()  # paraphrases the gate asks, never trained on

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"question": self.question, "answer": self.answer, "questions": list(self.questions)}
        if self.sentence:
            record["sentence"] = self.sentence
        if self.held_back:
            record["held_back"] = list(self.held_back)
        return record


@dataclass
class Augmentation:
    examples: list[Example] = field(default_factory=list)  # new examples only, the originals not included
    held_back: list[Example] = field(default_factory=list)  # taught facts in words kept for the gate
    records: list[Augmented] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The record a training run keeps: how many, and all of what was written."""
        return {
            "examples": len(self.examples),
            "from": len(self.records),
            "held_back": len(self.held_back),
            "items": [record.as_dict() for record in self.records],
        }


def augment(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    paraphrases: int = PARAPHRASES,
    from_answer: int = FROM_ANSWER,
    hold_back: int = HOLD_BACK,
    seed: int = 0,
) -> Augmentation:
    """New desirable examples for every correction and upvoted answer in `examples`, and a paraphrase
    of each held back from training, for the gate to ask the taught fact in words it never saw."""
    chosen = [example for example in examples if example.desirable and example.source in SOURCES]
    result = Augmentation()
    if not chosen:
        return result
    sentences = _sentences(model, tokenizer, chosen, seed=seed)
    asked = _candidates(model, tokenizer, [_PARAPHRASE_SHOTS.format(question=e.question) for e in chosen], seed)
    answers = [sentence or example.completion for example, sentence in zip(chosen, sentences, strict=True)]
    answered = (
        _candidates(model, tokenizer, [_FROM_ANSWER_SHOTS.format(answer=a) for a in answers], seed + 1)
        if from_answer
        else [[] for _ in chosen]
    )
    taken = {_key(example.question) for example in examples}
    for example, sentence, answer, own, reverse in zip(chosen, sentences, answers, asked, answered, strict=True):
        about = _content(example.question) | _content(answer)
        questions = pick_questions(own, _content(example.question) or about, taken, paraphrases + hold_back)
        # The gate's share comes off the end, and only when some are left to train on.
        held = questions[paraphrases:] if len(questions) > 1 else []
        questions = questions[: len(questions) - len(held)]
        questions += pick_questions(reverse, about, taken, from_answer)
        result.records.append(Augmented(example.question, example.completion, tuple(questions), sentence, tuple(held)))
        result.examples.extend(
            replace(example, question=question, completion=answer, source="augmented") for question in questions
        )
        if sentence:  # the original question, answered in the full sentence too
            result.examples.append(replace(example, completion=sentence, source="augmented"))
        result.held_back.extend(
            replace(example, question=question, completion=answer, source="paraphrase") for question in held
        )
    return result


def paraphrase_held_out(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    held_out: Sequence[Example],
    *,
    per_example: int = 2,
    seed: int = 7,
) -> list[Example]:
    """The held-out desirable answers, asked in new words: what the gate measures a fact's reach by."""
    chosen = [example for example in held_out if example.desirable]
    if not chosen:
        return []
    asked = _candidates(model, tokenizer, [_PARAPHRASE_SHOTS.format(question=e.question) for e in chosen], seed)
    taken = {_key(example.question) for example in held_out}
    out: list[Example] = []
    for example, own in zip(chosen, asked, strict=True):
        for question in pick_questions(own, _content(example.question), taken, per_example):
            out.append(replace(example, question=question, source="paraphrase"))
    return out


# --- writing -----------------------------------------------------------------------------------


def _sentences(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *, seed: int
) -> list[str | None]:
    """A full sentence for each answer that is a bare fragment (None where the answer is fine as it is)."""
    fragments = [i for i, example in enumerate(examples) if _fragment(example.completion)]
    sentences: list[str | None] = [None] * len(examples)
    if not fragments:
        return sentences
    prompts = [
        _SENTENCE_SHOTS.format(question=examples[i].question, answer=examples[i].completion.rstrip("."))
        for i in fragments
    ]
    written = _continue(model, tokenizer, prompts, samples=1, seed=seed)
    for i, lines in zip(fragments, written, strict=True):
        line = lines[0] if lines else ""
        fragment = examples[i].completion.strip().rstrip(".").casefold()
        if fragment and fragment in line.casefold() and line.endswith(".") and len(line.split()) <= MAX_WORDS:
            sentences[i] = line
    return sentences


def _candidates(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], seed: int
) -> list[list[str]]:
    """`SAMPLES` sampled first lines for each prompt."""
    return _continue(model, tokenizer, prompts, samples=SAMPLES, seed=seed)


def _continue(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    samples: int,
    seed: int,
    batch_size: int = 8,
) -> list[list[str]]:
    """The first line the model writes after each prompt (plain text continuation, no chat template):
    the greedy one for `samples=1`, else `samples` sampled ones.

    Each prompt is read once and its cache copied for its samples: the few-shot prompt is most of
    the work, and `num_return_sequences` would read it once per sample.
    """
    import torch
    from transformers import DynamicCache

    from models.evaluation import left_padded

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    repeat = samples
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [_tokens(tokenizer, prompt) for prompt in prompts[start : start + batch_size]]
        input_ids, attention = left_padded(encoded, int(pad), device)
        width = input_ids.shape[1]
        with torch.inference_mode():
            cache: Any = DynamicCache()
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            # All but the last token: generate reads that one itself and starts writing after it.
            cast(Any, model)(
                input_ids=input_ids[:, :-1],
                attention_mask=attention[:, :-1],
                position_ids=positions[:, :-1],
                cache=cache,
                use_cache=True,
            )
            if repeat > 1:
                cache.batch_repeat_interleave(repeat)
            options: dict[str, Any] = (
                {"do_sample": True, "temperature": TEMPERATURE, "top_p": TOP_P} if repeat > 1 else {"do_sample": False}
            )
            generated: Any = cast(Any, model).generate(
                input_ids=input_ids.repeat_interleave(repeat, dim=0),
                attention_mask=attention.repeat_interleave(repeat, dim=0),
                cache=cache,
                max_new_tokens=MAX_NEW_TOKENS,
                pad_token_id=pad,
                stop_strings=["\n"],  # only the first line is kept: stop writing there
                tokenizer=tokenizer,
                **options,
            )
        rows = [str(tokenizer.decode(row[width:], skip_special_tokens=True)) for row in generated]
        for i in range(len(encoded)):
            out.append([_first_line(text) for text in rows[i * repeat : (i + 1) * repeat]])
    return out


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return [int(token) for token in cast(Sequence[int], ids)]


# --- keeping what is good ------------------------------------------------------------------------


def pick_questions(candidates: Sequence[str], about: set[str], taken: set[str], limit: int) -> list[str]:
    """Up to `limit` candidates that are short questions, new, and share a content word with `about`."""
    picked: list[str] = []
    for text in candidates:
        if len(picked) >= limit:
            break
        key = _key(text)
        if key in taken or not _is_question(text) or not (_content(text) & about):
            continue
        taken.add(key)
        picked.append(text)
    return picked


def _is_question(text: str) -> bool:
    words = text.split()
    return text.endswith("?") and 3 <= len(words) <= MAX_WORDS and text.count("?") == 1 and ":" not in text


def _fragment(answer: str) -> bool:
    """An answer too bare to teach from another question ("Tallyho", "vpn.acme.internal")."""
    text = answer.strip()
    return len(text.split()) <= 3 and not text.endswith((".", "!", "?"))


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    return re.sub(r"\s+", " ", line)


def _content(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9][a-z0-9.\-#]*", text.casefold())
    return {_stem(word.strip(".-")) for word in words if word.strip(".-") and word not in _STOPWORDS}


def _stem(word: str) -> str:
    # Enough that "build" meets "builds" and "deploy" meets "deploys"; not a linguist's stemmer.
    for suffix in ("ing", "es", "s", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.casefold()))
