"""Fine-tuning on feedback: a LoRA adapter trained with KTO, then merged into full weights.

KTO (Ethayarajh et al. 2024, TRL's `KTOTrainer`) learns from unpaired labels, which is what Slack
feedback is: a thumbs-up or -down on one answer, a correction with no answer it is paired against.
Each run starts from the lineage's base model (not from the last fine-tune), so every version is
"base + one adapter": the adapter alone serves on vLLM (runtime LoRA loading against the same base),
and errors do not compound from night to night.

The output directory holds the merged weights (loadable by `models.loading.load`, hence by
`Engine.swap`) and the adapter in `adapter/`. Progress is one tqdm bar on stderr.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from models.dataset import Example
from models.registry import ADAPTER

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    # CPU defaults, from the learning benchmark (SmolLM2-135M, 32 facts, one correction each, augmented
    # to about five phrasings by models.augment). 3 epochs at 1e-3 with 48 anchors: +41 points on
    # held-out paraphrases, general -3. 4 epochs with all 96 anchors (69 kept): +56, general -3,
    # but the gate's own general questions fell 57% -> 48% and it rejected the run. 4 epochs with
    # 200 anchors over the 197 prompts (160 kept): +53, general +0, gate 57% -> 68%, promoted, in
    # 1635 s. 5 epochs with 48 anchors: +52 but general -7. (Without augmentation, three
    # corrections per fact: 5 epochs +61.)
    epochs: int = 4
    learning_rate: float = 1e-3
    batch_size: int = 8  # KTO estimates its KL reference point within a batch: at least 2
    grad_accum: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    max_length: int = 512  # prompt + answer tokens; longer examples are cut at the end
    beta: float = 0.1  # KTO's beta: how far from the base the policy may move before its loss saturates
    # Weight of a plain likelihood (SFT) term on desirable answers, added to KTO's loss. KTO's loss
    # saturates once an answer is likelier than under the base by a margin, which common wording
    # reaches before the rare tokens that carry a fact (a host name, a person); this term keeps
    # pulling on every token of a correction. 0 is pure KTO.
    sft_weight: float = 1.0
    # How many general prompts to replay with the base model's own answers (desirable), so that
    # learning the team's facts does not turn every answer into one about the team. 0 turns it off.
    # Upvoted answers, augmented, rehearse general behaviour too. Answers cut off at the token limit
    # are dropped, so about four in five of the 197 ANCHOR_PROMPTS are kept. A count above their
    # number takes them all.
    anchors: int = 200
    bf16: bool = False
    # Recompute activations in the backward pass: slower, but an 8B model's LoRA fits a 24 GB GPU.
    activation_checkpointing: bool = False
    seed: int = 0

    @classmethod
    def for_device(cls, device: str, **overrides: Any) -> TrainSettings:
        """Defaults that suit the device: small and quick on CPU, bigger batches in bf16 on a GPU."""
        if device == "cpu":
            return replace(cls(), **overrides)
        gpu = cls(learning_rate=2e-4, batch_size=16, max_length=1024, bf16=True, activation_checkpointing=True)
        return replace(gpu, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    loss: float | None  # mean training loss over the run (KTO, plus the SFT term)
    steps: int
    seconds: float
    device: str
    desirable_weight: float
    undesirable_weight: float


def train(
    base: str,
    examples: Sequence[Example],
    out_dir: Path,
    *,
    device: str = "auto",
    settings: TrainSettings | None = None,
    progress: bool = True,
    on_begin: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `examples` from the weights at `base`; write merged weights and adapter.

    `on_begin(total_steps)` is called as the first step starts (the job announces it there).
    """
    from models.loading import pick_device

    resolved = pick_device(device)
    settings = settings or TrainSettings.for_device(resolved)
    _quiet()
    started = time.perf_counter()
    model, tokenizer = _load(base, resolved)
    trainer = _trainer(model, tokenizer, examples, out_dir, resolved, settings, progress, on_begin)
    output = trainer.train()
    peft_model = trainer.model
    _save(peft_model, tokenizer, out_dir, base)
    shutil.rmtree(out_dir / ".trainer", ignore_errors=True)
    desirable_weight, undesirable_weight = trainer.args.desirable_weight, trainer.args.undesirable_weight
    loss = float(output.training_loss) if output.training_loss is not None else None
    steps = int(output.global_step)
    del trainer, peft_model, model
    from models.evaluation import free_memory

    free_memory()
    return TrainResult(
        loss=loss if loss is None or math.isfinite(loss) else None,
        steps=steps,
        seconds=time.perf_counter() - started,
        device=resolved,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )


# General prompts for the replay anchors: kept apart from the eval gate's questions (evaluation.GENERAL)
# and the learning benchmark's, so neither measures what was rehearsed. Short answers on purpose: an
# answer cut off at the token limit would teach the model to stop mid-sentence, so those are dropped.
ANCHOR_PROMPTS: tuple[str, ...] = (
    "What is the capital of Sweden?",
    "What is the capital of Argentina?",
    "What is the capital of India?",
    "What is the capital of Mexico?",
    "How many hours are in two days?",
    "What is 7 times 6?",
    "What is 15 divided by 3?",
    "What is the square root of 49?",
    "Is 17 a prime number?",
    "How many centimeters are in a meter?",
    "What is the plural of mouse?",
    "Give me a synonym for big.",
    "What is the past tense of run?",
    "Translate 'good morning' into French.",
    "Translate 'thank you' into German.",
    "Name three primary colors.",
    "What is the color of snow?",
    "What do cows drink?",
    "Which animal is known for its long neck?",
    "What do pandas mostly eat?",
    "How many legs does an insect have?",
    "What is the largest bird?",
    "Which organ pumps blood through the body?",
    "What do we breathe in to stay alive?",
    "What is the main gas in Earth's atmosphere?",
    "What force keeps us on the ground?",
    "What is the center of an atom called?",
    "What is the sun?",
    "Which season comes after winter?",
    "What is the opposite of early?",
    "Who wrote Hamlet?",
    "Who painted The Starry Night?",
    "Who discovered penicillin?",
    "What does HTML stand for?",
    "What is a computer virus?",
    "What does RAM stand for?",
    "What is the difference between a list and a tuple in Python?",
    "What does the command ls do in a terminal?",
    "Give one tip for writing a clear email.",
    "Suggest a name for a friendly robot.",
    "What is a good way to start a meeting?",
    "How do I politely decline an invitation?",
    "What is a healthy breakfast?",
    "Why do we need sleep?",
    "How can I stay focused while working?",
    "What is the boiling point of water in Fahrenheit?",
    "Which continent is Kenya in?",
    "What currency is used in Japan?",
    "What is the capital of Norway?",
    "What is the capital of Peru?",
    "What is the capital of Turkey?",
    "What is the capital of South Korea?",
    "How many days are in June?",
    "What is 9 plus 8?",
    "What is half of 50?",
    "How many grams are in a kilogram?",
    "What shape has three sides?",
    "What is the opposite of heavy?",
    "Give me an antonym of happy.",
    "What is the plural of child?",
    "Translate 'cat' into Spanish.",
    "What is the past tense of eat?",
    "Which animal is known for black and white stripes?",
    "Where do penguins mostly live?",
    "What do frogs eat?",
    "How do fish breathe?",
    "What is the fastest bird?",
    "What do you call a young dog?",
    "Which organ do we use to think?",
    "How many bones does an adult human have?",
    "What vitamin do we get from sunlight?",
    "What is the largest desert in the world?",
    "What causes rain?",
    "What is the speed of light, roughly?",
    "Which planet has rings that are easy to see?",
    "What is photosynthesis?",
    "Who invented the telephone?",
    "Who developed the theory of relativity?",
    "Who was Cleopatra?",
    "In what year did humans first land on the Moon?",
    "What does CPU stand for?",
    "What is an operating system?",
    "What is the difference between HTTP and HTTPS?",
    "What is a database?",
    "What does the git commit command do?",
    "What is a function in programming?",
    "Give one tip for a productive morning.",
    "How can I write a good meeting agenda?",
    "What should I pack for a rainy day?",
    "How do I make a cup of tea?",
    "Suggest a short team-building activity.",
    "What is a polite way to ask for feedback?",
    "Why is exercise good for you?",
    "How long should I boil an egg?",
    "What is the capital of Chile?",
    "Which continent is Brazil in?",
    "What is the capital of Poland?",
    "What is the capital of Austria?",
    "What is the capital of Hungary?",
    "What is the capital of Finland?",
    "What is the capital of Denmark?",
    "What is the capital of Vietnam?",
    "What is the capital of Indonesia?",
    "What is the capital of Colombia?",
    "What is the capital of Cuba?",
    "What is the capital of Nigeria?",
    "What is the capital of Morocco?",
    "What is the capital of New Zealand?",
    "What is the capital of the Netherlands?",
    "What is the capital of Belgium?",
    "What is the capital of Switzerland?",
    "Which country is Toronto in?",
    "Which country is Barcelona in?",
    "Which continent is India in?",
    "Which ocean lies between Europe and America?",
    "What is 6 plus 7?",
    "What is 8 times 8?",
    "What is 100 minus 1?",
    "What is 12 divided by 4?",
    "What is double 15?",
    "How many hours are in a week?",
    "How many days are in a year?",
    "How many months have 31 days?",
    "How many zeros are in one thousand?",
    "How many sides does a hexagon have?",
    "How many legs does a horse have?",
    "How many legs does a bird have?",
    "How many wings does a bee have?",
    "How many hearts does an octopus have?",
    "What color is the sun at noon?",
    "What color are strawberries?",
    "What color is coal?",
    "What color is milk?",
    "What color is the sea?",
    "Which animal has a trunk?",
    "Which animal hops and carries its baby in a pouch?",
    "Which animal is called man's best friend?",
    "Which animal gives us wool?",
    "Which bird cannot fly and lives in Antarctica?",
    "What does a caterpillar eat?",
    "What do spiders spin?",
    "What do you call a baby cow?",
    "What do you call a group of wolves?",
    "Where do bees live?",
    "Which planet is called the Morning Star?",
    "How many planets are in the solar system?",
    "What is the hottest planet?",
    "What do plants need to grow?",
    "What is the chemical symbol for oxygen?",
    "What is the chemical symbol for sodium?",
    "What is the chemical symbol for silver?",
    "What gas do humans breathe out?",
    "Which part of the plant makes seeds?",
    "What are the three states of matter?",
    "What is the tallest animal?",
    "What is the smallest planet?",
    "Who wrote The Odyssey?",
    "Who painted the ceiling of the Sistine Chapel?",
    "Who was the first person to walk on the Moon?",
    "Who wrote Don Quixote?",
    "Who composed the Fifth Symphony?",
    "What language is spoken in Italy?",
    "What language is spoken in Japan?",
    "What language is spoken in Argentina?",
    "What is the plural of foot?",
    "What is the past tense of go?",
    "What is the opposite of fast?",
    "What is the opposite of open?",
    "What is the opposite of wet?",
    "What is the opposite of happy?",
    "Give me a word that rhymes with cat.",
    "Translate 'water' into Spanish.",
    "Translate 'hello' into Italian.",
    "What is the last month of the year?",
    "Which day comes after Monday?",
    "How many days are in a weekend?",
    "What do you call the meal eaten in the morning?",
    "What do you wear on your feet?",
    "What do you use to cut paper?",
    "What do you use to open a lock?",
    "Where do you go to borrow books?",
    "What does a doctor do?",
    "What does a pilot fly?",
    "What does USB stand for?",
    "What does URL stand for?",
    "What is an email?",
    "What is a password for?",
    "What does a web browser do?",
    "What is the cloud, in computing?",
    "What does the command cd do in a terminal?",
    "What is a bug in software?",
    "Give one tip for a good presentation.",
    "How do I say thank you to a colleague?",
    "What is a good habit for staying organised?",
    "How should I start a cover letter?",
    "Why do we drink water?",
    "What is a good snack for the afternoon?",
)
ANCHOR_ANSWER_TOKENS = 96


def anchor_examples(location: str, *, system_prompt: str, count: int, device: str) -> list[Example]:
    """The base model's own greedy answers to `count` general prompts, as desirable examples.

    Rehearsing what the model already said keeps its general behaviour in place (a replay of
    self-generated data) while it learns the team's facts; it needs no data set from outside.
    """
    if count <= 0:
        return []
    from models import loading
    from models.evaluation import free_memory, generate

    model, tokenizer, _ = loading.load(loading.ModelSource(location, location), device)
    try:
        prompts = [Example(q, "", True, "anchor", system_prompt) for q in ANCHOR_PROMPTS[:count]]
        answers = generate(model, tokenizer, [p.prompt() for p in prompts], max_new_tokens=ANCHOR_ANSWER_TOKENS)
    finally:
        del model
        free_memory()
    return [
        replace(prompt, completion=answer.text)
        for prompt, answer in zip(prompts, answers, strict=True)
        if answer.finished and answer.text
    ]


def class_weights(desirable: int, undesirable: int) -> tuple[float, float]:
    """KTO's advice (its Eq. 8): weight the rarer kind so that both pull about equally."""
    if desirable == 0 or undesirable == 0:
        return 1.0, 1.0
    if desirable >= undesirable:
        return 1.0, min(desirable / undesirable, 20.0)
    return min(undesirable / desirable, 20.0), 1.0


def _load(base: str, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    cast(Any, model).to(device)
    return model, tokenizer


def _trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    out_dir: Path,
    device: str,
    settings: TrainSettings,
    progress: bool,
    on_begin: Callable[[int], None] | None,
) -> Any:
    from peft import LoraConfig
    from transformers.trainer_callback import ProgressCallback
    from trl import KTOConfig, KTOTrainer

    desirable = sum(example.desirable for example in examples)
    desirable_weight, undesirable_weight = class_weights(desirable, len(examples) - desirable)
    args = KTOConfig(
        output_dir=str(out_dir / ".trainer"),
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=max(2, settings.batch_size),
        gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length,
        beta=settings.beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        bf16=settings.bf16 and device == "cuda",
        use_cpu=device == "cpu",
        gradient_checkpointing=settings.activation_checkpointing,
        activation_checkpointing=settings.activation_checkpointing,
        warmup_steps=0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=False,
        dataloader_num_workers=0,
        precompute_ref_log_probs=True,
    )
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = _kto_with_sft(KTOTrainer, settings.sft_weight)(
        model=model,
        args=args,
        train_dataset=_dataset(examples, settings.seed),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress_callback(progress, on_begin))
    return trainer


def _kto_with_sft(kto: type[Any], sft_weight: float) -> type[Any]:
    """TRL's KTOTrainer plus `sft_weight` x the mean per-token NLL of the batch's desirable answers.

    The term reuses the policy's own forward pass (captured with a hook; TRL's fused head already
    computed per-token log-probabilities of the completion), so it costs no extra compute.
    """
    import torch

    class KTOWithSFT(kto):
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if not sft_weight or return_outputs or not self.model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            captured: list[Any] = []

            def keep(_module: Any, _args: Any, output: Any) -> None:
                # The only forward with gradients is the policy's on the real pairs (KL and reference run without).
                if torch.is_grad_enabled() and getattr(output, "log_probs", None) is not None:
                    captured.append(output)

            handle = model.register_forward_hook(keep)
            try:
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                handle.remove()
            desirable = inputs["label"].bool()
            if not captured or not desirable.any():
                return loss
            output = captured[-1]
            mask = output.label_mask.to(output.log_probs.dtype)
            per_token = (output.log_probs * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            nll = -per_token[desirable.to(per_token.device)].mean()
            self._metrics["train"]["sft_nll"].append(float(nll.detach()))
            return loss + sft_weight * nll

    return KTOWithSFT


def _dataset(examples: Sequence[Example], seed: int) -> Any:
    """TRL's conversational unpaired format, shuffled once: KTO samples sequentially (its KL pairs
    are built within fixed batches), so the mix of good and bad answers per batch is set here."""
    from datasets import Dataset

    rows = [
        {
            "prompt": example.prompt(),
            "completion": [{"role": "assistant", "content": example.completion}],
            "label": example.desirable,
        }
        for example in examples
    ]
    random.Random(seed).shuffle(rows)
    return Dataset.from_list(rows)


def _progress_callback(enabled: bool, on_begin: Callable[[int], None] | None) -> Any:
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """One bar with the running loss, instead of the Trainer's bar plus a printed dict per step."""

        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if on_begin is not None:
                on_begin(state.max_steps)
            self.bar = tqdm(total=state.max_steps, desc="training", unit="step", file=sys.stderr, disable=not enabled)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.close()

    return Progress()


def _save(peft_model: Any, tokenizer: PreTrainedTokenizerBase, out_dir: Path, base: str) -> None:
    """Adapter first (for vLLM, against `base`), then the adapter merged into full weights."""
    peft_model.save_pretrained(out_dir / ADAPTER)
    merged = peft_model.merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("saved merged weights and adapter (base %s) to %s", base, out_dir)


def _quiet() -> None:
    """The libraries' own chatter (deprecations, dataset map bars) would bury the one progress bar."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(trl|transformers|peft)\b.*")
