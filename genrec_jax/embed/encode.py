"""Texts -> unit-norm sentence embeddings: a BERT sentence encoder, or any decoder LLM.

Both paths share the batching: texts are sorted by token count (similar lengths share a
batch, so little padding), padded to one of a few bucket lengths and to a full batch, so a
jitted forward compiles a handful of shapes. Embeddings are the mean of the last hidden
states over the real (non-padding) tokens, then L2-normalised, as sentence-transformers
does for all-MiniLM-L6-v2. Padding never changes a text's embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Tokenizer

from genrec_jax import progress
from genrec_jax.data.raw import DataError
from genrec_jax.embed import bert

# token ids [B, T] int32, mask [B, T] bool -> something [B, T, H] or [B, H].
BatchFn = Callable[[np.ndarray, np.ndarray], jax.Array]

_SMALLEST_BUCKET = 16
_POOLING_FILE = os.path.join('1_Pooling', 'config.json')


def mean_pool_hidden_states(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of hidden [B, T, H] over the tokens where mask [B, T] is set -> [B, H] float32.

  A row without any token pools to zeros.
  """
  weights = mask.astype(jnp.float32)  # [B, T]
  summed = jnp.einsum('BTH,BT->BH', hidden.astype(jnp.float32), weights)
  count = jnp.maximum(weights.sum(axis=1, keepdims=True), 1.0)  # [B, 1]
  return summed / count


def l2_normalize(vectors: jax.Array, eps: float = 1e-12) -> jax.Array:
  """vectors [B, H] scaled to unit L2 norm (zero rows stay zero)."""
  norm = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / jnp.maximum(norm, eps)


def bucket_lengths(max_length: int) -> tuple[int, ...]:
  """Padded lengths: powers of two from 16 below max_length, then max_length itself."""
  lengths = []
  length = _SMALLEST_BUCKET
  while length < max_length:
    lengths.append(length)
    length *= 2
  return (*lengths, max_length)


def encode_texts(texts: Sequence[str], model_dir: str, *, batch_size: int = 64,
                 max_length: int = 128, show_progress: bool = True) -> np.ndarray:
  """Sentence embeddings [N, H] float32 (unit norm) from a Hugging Face BERT folder.

  Args:
    texts: the texts to embed.
    model_dir: folder with config.json, model.safetensors and tokenizer.json (e.g.
      `bert.minilm_dir()`); a sentence-transformers `1_Pooling/config.json`, if present,
      must ask for mean pooling.
    batch_size: texts per forward pass.
    max_length: tokens per text, [CLS] and [SEP] included; longer texts are truncated.
    show_progress: show a tqdm progress bar.

  Returns:
    [N, H] float32, row n = texts[n].
  """
  encoder, params, config = bert.load_bert(model_dir)
  _check_mean_pooling(model_dir)
  if not 2 < max_length <= config.max_position_embeddings:
    raise ValueError(f'max_length must be in [3, {config.max_position_embeddings}] for '
                     f'{model_dir}, got {max_length}')
  tokenizer = Tokenizer.from_file(os.path.join(model_dir, bert.TOKENIZER_FILE))
  tokenizer.no_padding()  # we pad to buckets ourselves
  tokenizer.enable_truncation(max_length)  # keeps the [CLS] ... [SEP] post-processing
  token_ids = [encoding.ids for encoding in tokenizer.encode_batch(list(texts))]
  return _embed_in_buckets(
      token_ids, functools.partial(_bert_sentence_embeddings, encoder, params),
      batch_size=batch_size,
      max_length=max_length, pad_id=config.pad_token_id, width=config.hidden_size,
      show_progress=show_progress, desc='Embedding texts')


# The encoder (a frozen dataclass) is static: calls with the same architecture share
# compiled code across encode_texts calls.
@functools.partial(jax.jit, static_argnums=0)
def _bert_sentence_embeddings(encoder: bert.BertEncoder, params: dict, token_ids: jax.Array,
                              mask: jax.Array) -> jax.Array:
  hidden = encoder.apply({'params': params}, token_ids, mask)  # [B, T, H]
  return l2_normalize(mean_pool_hidden_states(hidden, mask))  # [B, H]


def encode_with_llm(texts: Sequence[str], tokenizer, hidden_states_fn: BatchFn, *,
                    batch_size: int = 64, max_length: int = 128, pad_id: int = 0,
                    normalize: bool = True, show_progress: bool = True) -> np.ndarray:
  """Mean-pooled last hidden states [N, H] float32 of any (decoder) language model.

  Texts are right-padded, so with causal attention the real tokens never see the padding.

  Args:
    texts: the texts to embed.
    tokenizer: anything whose `encode(text)` returns token ids, or an object with `.ids`
      (a `tokenizers.Tokenizer` or a transformers tokenizer); special tokens are whatever
      it adds. Ids are cut to their first `max_length`.
    hidden_states_fn: (token_ids [B, T] int32, mask [B, T] bool) -> last hidden states
      [B, T, H]; jit it yourself (it is called with a few fixed shapes).
    batch_size: texts per call.
    max_length: tokens per text.
    pad_id: the id put at padding positions (they are masked out).
    normalize: L2-normalise the embeddings.
    show_progress: show a tqdm progress bar.

  Returns:
    [N, H] float32, row n = texts[n].
  """
  if not texts:
    raise ValueError('encode_with_llm: no texts to embed.')
  token_ids = []
  for text in texts:
    ids = tokenizer.encode(text)
    token_ids.append(list(getattr(ids, 'ids', ids))[:max_length])

  def embed_batch(ids: np.ndarray, mask: np.ndarray) -> jax.Array:
    pooled = mean_pool_hidden_states(hidden_states_fn(ids, mask), mask)
    return l2_normalize(pooled) if normalize else pooled

  return _embed_in_buckets(token_ids, embed_batch, batch_size=batch_size,
                           max_length=max_length, pad_id=pad_id, width=None,
                           show_progress=show_progress, desc='Embedding texts (LLM)')


def _embed_in_buckets(token_ids: list[list[int]], embed_batch: BatchFn, *, batch_size: int,
                      max_length: int, pad_id: int, width: int | None, show_progress: bool,
                      desc: str) -> np.ndarray:
  """embed_batch over length-sorted batches padded to buckets -> [N, H] in input order."""
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  lengths = np.array([len(ids) for ids in token_ids], np.int64)
  buckets = np.array(bucket_lengths(max_length))
  order = np.argsort(lengths, kind='stable')
  out = None if width is None else np.zeros((len(token_ids), width), np.float32)
  with progress.bar(total=len(token_ids), desc=desc, unit='text',
                    disable=not show_progress) as bar:
    for start in range(0, len(order), batch_size):
      rows = order[start:start + batch_size]
      padded_len = int(buckets[np.searchsorted(buckets, lengths[rows].max())])
      # Full batch_size rows even for the last batch: one shape per bucket to compile.
      ids = np.full((batch_size, padded_len), pad_id, np.int32)  # [B, T]
      mask = np.zeros((batch_size, padded_len), bool)  # [B, T]
      for row, text_ids in enumerate(token_ids[i] for i in rows):
        ids[row, :len(text_ids)] = text_ids
        mask[row, :len(text_ids)] = True
      embeddings = np.asarray(embed_batch(ids, mask), np.float32)[:len(rows)]  # [b, H]
      if out is None:
        out = np.zeros((len(token_ids), embeddings.shape[-1]), np.float32)
      out[rows] = embeddings
      bar.update(len(rows))
  return out


def _check_mean_pooling(model_dir: str) -> None:
  path = os.path.join(model_dir, _POOLING_FILE)
  if not os.path.isfile(path):
    return
  with open(path) as f:
    pooling = json.load(f)
  others = [mode for mode, on in pooling.items()
            if mode.startswith('pooling_mode_') and on and mode != 'pooling_mode_mean_tokens']
  if not pooling.get('pooling_mode_mean_tokens') or others:
    raise DataError(f'{path}: the model pools with {others or "no mean"}; only mean '
                    'pooling (pooling_mode_mean_tokens) is implemented.')


def load_npy_embeddings(path: str, num_items: int) -> np.ndarray:
  """Precomputed item embeddings [num_items, D] float32 from a .npy file.

  Row i must be item i of the dataset (the order of `Dataset.item_ids`).

  Raises:
    DataError: the file is missing or unreadable, has the wrong shape, or holds NaN/inf.
  """
  fix = (f'Set embed.npy_path to a .npy file of shape [{num_items}, D] whose row i '
         'embeds item i of the dataset (Dataset.item_ids order).')
  if not path or not os.path.isfile(path):
    raise DataError(f'Item embeddings file {path!r} not found. {fix}')
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: not a readable .npy array ({e}). {fix}') from e
  if not isinstance(array, np.ndarray) or array.ndim != 2 or len(array) != num_items:
    shape = getattr(array, 'shape', type(array).__name__)
    raise DataError(f'{path}: item embeddings have shape {shape}, expected '
                    f'[{num_items}, D]. {fix}')
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
    raise DataError(f'{path}: item embeddings have dtype {array.dtype}, expected numbers.')
  array = array.astype(np.float32)
  bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
  if len(bad_rows):
    raise DataError(f'{path}: {len(bad_rows)} item embeddings contain NaN or inf '
                    f'(first: row {bad_rows[0]}). {fix}')
  return array
