"""The LC-Rec / LETTER processed format and precomputed SIDs (the papers' Instruments data)."""

import json
import os

import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import readers
from genrec_jax.data.load import load_dataset
from genrec_jax.data.raw import DataError
from genrec_jax.tokenize.build import build_sids
from genrec_jax.tokenize.build import default_tokenize_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTRUMENTS = os.path.join(REPO, '..', 'shared', 'data', 'amazon18', 'Instruments')

INTER = {'0': [0, 1, 2, 3], '1': [1, 2, 4], '2': [3, 0, 4, 1], '3': [2, 4, 0]}
ITEMS = {'0': {'title': 'Guitar strings', 'brand': 'Acme', 'categories': 'Strings'},
         '4': {'title': 'Capo', 'description': ''}}
INDEX = {'0': ['<a_1>', '<b_0>', '<c_2>'], '1': ['<a_0>', '<b_3>', '<c_1>'],
         '2': ['<a_1>', '<b_0>', '<c_2>'],  # collides with item 0
         '3': ['<a_2>', '<b_1>', '<c_0>'], '4': ['<a_0>', '<b_3>', '<c_0>']}


def _write(directory, name='Toy', with_text=True, index=None):
  directory.mkdir(exist_ok=True)
  (directory / f'{name}.inter.json').write_text(json.dumps(INTER))
  if with_text:
    (directory / f'{name}.item.json').write_text(json.dumps(ITEMS))
  (directory / f'{name}.index.json').write_text(json.dumps(index or INDEX))
  return str(directory)


def test_reader_keeps_list_order_as_time_and_reads_optional_text(tmp_path):
  raw = readers.read('lcrec', _write(tmp_path / 'd'), name='Toy')
  assert raw.users.tolist()[:4] == ['0'] * 4 and raw.items.tolist()[:4] == ['0', '1', '2', '3']
  assert raw.timestamps.tolist()[:5] == [0.0, 1.0, 2.0, 3.0, 0.0]
  assert raw.item_text == {'0': {'title': 'Guitar strings', 'brand': 'Acme',
                                 'categories': 'Strings'}, '4': {'title': 'Capo'}}
  ds = dataset_lib.preprocess(raw, kcore=1)
  assert [ds.item_ids[i] for i in ds.sequence(list(ds.user_ids).index('2'))] == [
      '3', '0', '4', '1']


def test_without_text_and_precomputed_sids_with_a_collision(tmp_path):
  directory = _write(tmp_path / 'd', with_text=False)
  raw = readers.read('lcrec', directory, name='Toy')
  assert raw.item_text == {}
  ds = dataset_lib.preprocess(raw, kcore=1)
  tok = default_tokenize_config()
  tok.update(method='precomputed', index_path=os.path.join(directory, 'Toy.index.json'))
  table = build_sids(tok, ds, np.zeros((ds.num_items, 2), np.float32), seed=0)
  assert table.info['collision_rate'] == pytest.approx(2 / 5)
  assert table.level_sizes == (3, 4, 3, 2)  # a, b, c from the index + the dedup level
  tokens = [tuple(t[t >= 0]) for t in table.item_tokens()]
  assert len(set(tokens)) == 5  # items 0 and 2 told apart by the dedup level
  item = {name: i for i, name in enumerate(ds.item_ids)}
  assert table.codes[item['1'], :3].tolist() == [0, 3, 1]


@pytest.mark.parametrize('index, message', [
    ({k: v for k, v in INDEX.items() if k != '3'}, 'no SID for item 3'),
    ({**INDEX, '1': ['<b_0>', '<a_1>', '<c_1>']}, 'in level order'),
])
def test_bad_index_files_name_the_problem(tmp_path, index, message):
  directory = _write(tmp_path / 'd', index=index)
  ds = dataset_lib.preprocess(readers.read('lcrec', directory, name='Toy'), kcore=1)
  tok = default_tokenize_config()
  tok.update(method='precomputed', index_path=os.path.join(directory, 'Toy.index.json'))
  with pytest.raises(DataError, match=message):
    build_sids(tok, ds, np.zeros((ds.num_items, 2), np.float32), seed=0)


def test_malformed_and_missing_files(tmp_path):
  with pytest.raises(DataError, match='data directory not found'):
    readers.read('lcrec', tmp_path / 'nowhere', name='Toy')
  directory = tmp_path / 'd'
  directory.mkdir()
  (directory / 'Toy.inter.json').write_text('{"0": [1, 2')
  with pytest.raises(DataError, match='Toy.inter.json: not valid JSON'):
    readers.read('lcrec', directory, name='Toy')


@pytest.mark.skipif(not os.path.isdir(INSTRUMENTS), reason='shared Instruments data absent')
def test_instruments_statistics_equal_the_papers(tmp_path, monkeypatch):
  monkeypatch.setenv('GENREC_TFDS_DIR', str(tmp_path / 'tfds'))
  config = config_lib.base_config('pop', 'instruments-lcrec')
  config.data.dir = INSTRUMENTS
  stats = load_dataset(config.data).statistics()
  assert (stats['users'], stats['items'], stats['interactions']) == (24772, 9922, 206153)
  assert round(100 * stats['sparsity'], 2) == 99.92
  assert round(stats['avg_length'], 2) == 8.32


def test_cooccurrence_embeddings_match_a_dense_decomposition():
  from genrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from genrec_jax.embed.collaborative import cooccurrence_embeddings  # pylint: disable=g-import-not-at-top
  ds = dataset_lib.preprocess(synthetic.generate(num_users=80, num_items=40, seed=2), kcore=2)
  window = 3
  dense = np.zeros((ds.num_items, ds.num_items))
  for u in range(ds.num_users):  # brute force: count "j follows i within the window"
    seq = ds.train_sequence(u)
    for a in range(len(seq)):
      for b in range(a + 1, min(a + window + 1, len(seq))):
        dense[seq[a], seq[b]] += 1
        dense[seq[b], seq[a]] += 1
  dense = np.log1p(dense)
  x = cooccurrence_embeddings(ds, dim=4, window=window)  # a clear eigen-gap after 4
  eigenvalues, vectors = np.linalg.eigh(dense)
  top = np.argsort(-np.abs(eigenvalues))[:4]
  # Rows are U·sqrt(|S|): X Xᵀ equals the dense top-4 part with |eigenvalues|.
  expected = (vectors[:, top] * np.abs(eigenvalues[top])) @ vectors[:, top].T
  np.testing.assert_allclose(x @ x.T, expected, atol=1e-3 * np.abs(eigenvalues).max())
