"""load_dataset(data_config, workdir): raw files -> cached, preprocessed `Dataset`.

Raw files are converted once to TFDS (see tfds_raw.py); the preprocessed dataset is cached in
`<workdir>/data/<name>-<fingerprint>.npz`, the fingerprint covering the raw files and every
preprocessing field, so a changed config never reuses a stale cache.
"""

from __future__ import annotations

import os

from absl import logging

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import readers
from genrec_jax.data import synthetic
from genrec_jax.data import tfds_raw
from genrec_jax.data.dataset import Dataset
from genrec_jax.data.raw import DataError

_PREPROCESS_FIELDS = ('kcore', 'max_history', 'head_ratio', 'num_groups', 'dedup')


def load_dataset(data_config, workdir: str | None = None) -> Dataset:
  """The preprocessed dataset of `data_config`, from the workdir cache when possible."""
  read, files, reader_args = _raw_reader(data_config)
  preprocess_args = {f: data_config[f] for f in _PREPROCESS_FIELDS}
  raw_key = dataset_lib.fingerprint(data_config.source, reader_args, _file_stats(files),
                                    str(tfds_raw.RawInteractions.VERSION))
  key = dataset_lib.fingerprint(raw_key, preprocess_args, dataset_lib.PREPROCESS_VERSION)
  cache = os.path.join(workdir, 'data', f'{data_config.name}-{key}.npz') if workdir else None
  if cache and os.path.exists(cache):
    dataset = dataset_lib.load(cache)
    logging.info('Loaded cached dataset %s', cache)
  else:
    if data_config.source == 'synthetic':
      raw = read()
    else:
      raw = tfds_raw.load_raw_cached(read, name=f'{data_config.source}_{raw_key}',
                                     tfds_dir=_tfds_dir(data_config), files=files)
    dataset = dataset_lib.preprocess(raw, **preprocess_args)
    if cache:
      os.makedirs(os.path.dirname(cache), exist_ok=True)
      dataset_lib.save(dataset, cache)
  print(describe(dataset))
  return dataset


def describe(dataset: Dataset) -> str:
  """Dataset statistics and what preprocessing dropped, as printed at the start of a run."""
  stats = dataset.statistics()
  log = dataset.log
  lines = [
      f'Dataset {dataset.name}: {stats["users"]:,} users, {stats["items"]:,} items, '
      f'{stats["interactions"]:,} interactions, sparsity {100 * stats["sparsity"]:.2f}%, '
      f'average length {stats["avg_length"]:.2f}.',
      f'  head items {stats["head_items"]:,} take '
      f'{100 * stats["head_share_of_train_interactions"]:.1f}% of training interactions; '
      f'{100 * stats["test_targets_tail_share"]:.1f}% of test targets are tail items.',
      f'  from {log["raw_interactions"]:,} raw interactions ({log["raw_users"]:,} users, '
      f'{log["raw_items"]:,} items): {log.get("duplicates_removed", 0):,} duplicates and '
      f'{log["kcore_removed_interactions"]:,} interactions ({log["kcore_removed_users"]:,} '
      f'users, {log["kcore_removed_items"]:,} items) removed by k-core '
      f'in {log["kcore_rounds"]} round{"s" * (log["kcore_rounds"] != 1)}.',
  ]
  if log['dropped_while_reading']:
    lines.append(f'  records skipped while reading: {log["dropped_while_reading"]}')
  if log['items_without_text']:
    lines.append(f'  items without text: {log["items_without_text"]:,}')
  return '\n'.join(lines)


def _raw_reader(data_config):
  """(read() -> RawData, raw files to fingerprint, reader arguments) for the config."""
  source = data_config.source
  if source == 'synthetic':
    args = data_config.synthetic.to_dict()
    return lambda: synthetic.generate(**args, name='synthetic'), [], args
  data_dir = data_config.dir or None
  if source == 'movielens100k' and data_dir is None:
    data_dir = readers.recbole_example_dir('ml-100k')
  if data_dir is None:
    raise DataError(
        f'config.data.dir is empty: set it to the folder with the raw {source} files '
        f'(e.g. --config.data.dir=/data/amazon18).')
  kwargs = {'on_bad_line': data_config.on_bad_line}
  if source in ('recbole', 'lcrec'):
    kwargs['name'] = data_config.category
  elif source != 'movielens100k':
    kwargs['category'] = data_config.category
  files = sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir)) if os.path.isdir(
      data_dir) else []
  args = {'dir': os.path.abspath(data_dir), **kwargs}
  return lambda: readers.read(source, data_dir, **kwargs), files, args


def _file_stats(files):
  # Size and mtime in ns, not a hash of the bytes: hashing a multi-GB dump on every run costs
  # seconds to minutes; a rewrite that keeps both size and the ns mtime goes unnoticed.
  return [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files
          if os.path.isfile(f)]


def _tfds_dir(data_config) -> str:
  return (data_config.tfds_dir or os.environ.get('GENREC_TFDS_DIR')
          or os.path.expanduser('~/tensorflow_datasets'))
