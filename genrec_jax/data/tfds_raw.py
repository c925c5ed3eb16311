"""Raw datasets as versioned TFDS array_record datasets (read without TensorFlow).

Reading a large raw Amazon dump takes minutes; the first run converts it once into a TFDS
dataset (one record per user: raw items and timestamps in file order; one record per item:
its text fields) under `data.tfds_dir`, and later runs read that with `tfds.data_source`.
The builder config name holds the reader arguments and a fingerprint of the raw files
(path, size, mtime in ns), so changed raw files are converted again; `VERSION` is bumped when
a reader changes what it emits, and is part of the workdir cache key (load.py).

Timestamps are stored as the int64 bit patterns of their float64 values. A TFDS float feature
is a tf.train.Example float_list, which holds float32: near 8.9e8 s that is a 64 s step, and
1.0.0 reordered 150 of MovieLens-100k's 943 test targets. The bit pattern round-trips exactly.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from genrec_jax.data.raw import RawData


class RawInteractions(tfds.core.GeneratorBasedBuilder):
  """One raw source (e.g. Amazon 2018 Instruments) as array_record files."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Per-user raw sequences in file order and per-item text.',
      '2.0.0': 'Timestamps exact: float64 bit patterns as int64 (1.0.0 rounded to float32).',
  }

  def __init__(self, *, read: Callable[[], RawData], config_name: str, **kwargs):
    self._read = read
    self._raw = None
    # Every source is a config made at run time: TFDS warns "Using custom data
    # configuration" each time, which says nothing here.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
      super().__init__(config=tfds.core.BuilderConfig(name=config_name), **kwargs)
    finally:
      logging.set_verbosity(verbosity)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'key': tfds.features.Text(),
            'items': tfds.features.Sequence(tfds.features.Text()),
            'timestamps': tfds.features.Sequence(np.int64),  # float64 bits
            'text_json': tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
    )

  # TFDS prints "Downloading and preparing dataset Unknown size ..." although nothing
  # downloads; load_raw_cached prints what is converted instead.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing downloads: the reader reads local files
    self._raw = raw = self._read()
    self.info.metadata.update(
        name=raw.name, dropped=raw.dropped, source_files=list(raw.source_files))
    splits = {'users': self._generate_examples('users')}
    if raw.item_text:  # TFDS cannot write an empty split; no text means no 'items' split
      splits['items'] = self._generate_examples('items')
    return splits

  def _generate_examples(self, split: str):
    raw = self._raw
    if split == 'items':
      for item, text in raw.item_text.items():
        yield item, {'key': item, 'items': [], 'timestamps': np.zeros(0, np.int64),
                     'text_json': json.dumps(text)}
      return
    order = np.argsort(raw.users, kind='stable')  # groups users, keeps file order inside
    users, items, times = raw.users[order], raw.items[order], raw.timestamps[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    for start, end in zip(bounds[:-1], bounds[1:]):
      yield str(users[start]), {
          'key': str(users[start]), 'items': [str(i) for i in items[start:end]],
          'timestamps': _float64_bits(times[start:end]), 'text_json': ''}


def _float64_bits(times: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(times, np.float64).view(np.int64)


def _float64_from_bits(bits) -> np.ndarray:
  return np.ascontiguousarray(bits, np.int64).view(np.float64)


def load_raw_cached(read: Callable[[], RawData], *, name: str, tfds_dir: str,
                    files: Sequence[str] = ()) -> RawData:
  """Returns the raw data, converting the raw files with `read` to TFDS on first use.

  `name` identifies the raw files and reader arguments (see load.py); it names the config.
  `files` are the raw files, named in the one line printed when they are converted.
  """
  tfds.disable_progress_bar()  # one conversion per dataset; the bars only clutter run logs
  builder = RawInteractions(read=read, config_name=name, data_dir=tfds_dir,
                             file_format='array_record')
  if not builder.is_prepared():
    shown = ', '.join(os.path.basename(f) for f in files) or 'the raw files'
    print(f'Converting {shown} once to a TFDS cache in {builder.data_dir} '
          '(nothing downloads; later runs read the cache).', flush=True)
    try:
      builder.download_and_prepare()
    except FileExistsError:  # a concurrent run (a sweep, a job array) converted it first
      builder = RawInteractions(read=read, config_name=name, data_dir=tfds_dir,
                                file_format='array_record')
      if not builder.is_prepared():
        raise
  meta = builder.info.metadata
  users_src = builder.as_data_source(split='users')
  users, items, times = [], [], []
  for record in users_src:
    n = len(record['items'])
    users.append(np.full(n, record['key'].decode()))
    items.append(np.array([i.decode() for i in record['items']], dtype=str))
    times.append(_float64_from_bits(record['timestamps']))
  item_text = {}
  if 'items' in builder.info.splits:
    item_text = {r['key'].decode(): json.loads(r['text_json'].decode())
                 for r in builder.as_data_source(split='items')}
  return RawData(
      name=meta['name'], users=np.concatenate(users), items=np.concatenate(items),
      timestamps=np.concatenate(times), item_text=item_text,
      source_files=tuple(meta['source_files']), dropped=dict(meta['dropped']))
