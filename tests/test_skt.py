"""SKT and RQK-h-t through the tokenize stage: the properties Ghost's SKT promises."""

import jax
import numpy as np
import pytest

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.tokenize import stats
from genrec_jax.tokenize.build import build_sids
from genrec_jax.tokenize.build import default_tokenize_config
from genrec_jax.tokenize.skt import nearest_head
from genrec_jax.tokenize.skt import skt_codes


@pytest.fixture(scope='module')
def data():
  raw, truth = synthetic.generate_with_truth(num_users=300, num_items=200, seed=5)
  ds = dataset_lib.preprocess(raw, kcore=2)
  index = np.array([int(i[1:]) for i in ds.item_ids])
  rng = np.random.default_rng(0)
  topics = truth['item_topic'][index]
  emb = np.eye(topics.max() + 1)[topics] + 0.4 * rng.normal(size=(len(index), topics.max() + 1))
  return ds, emb.astype(np.float32)


def test_tail_items_inherit_the_sid_of_their_nearest_head(data):
  ds, emb = data
  codes, eos, sizes, _ = skt_codes(emb, emb, ds.is_head, jax.random.PRNGKey(0), head_levels=2,
                                   tail_levels=2, codes_per_level=6)
  heads, tails = np.flatnonzero(ds.is_head), np.flatnonzero(~ds.is_head)
  x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  for t in tails:  # brute-force cosine-nearest head
    anchor = heads[np.argmax(x[heads] @ x[t])]
    assert codes[t, :2].tolist() == codes[anchor, :2].tolist()
  assert (codes[heads, 2:] == -1).all() and (codes[tails] >= 0).all()
  assert eos.tolist() == ds.is_head.tolist()  # head SIDs end with EOS, tail SIDs do not
  assert sizes == [6, 6, 6, 6]
  np.testing.assert_array_equal(nearest_head(emb, ds.is_head)[heads], heads)


@pytest.mark.parametrize('method, exit_steps', [('skt', {2}), ('rq_kmeans', None)])
def test_sids_are_unique_prefix_free_and_skt_branches_once(data, method, exit_steps):
  ds, emb = data
  tok = default_tokenize_config()
  tok.update(method=method, levels=4, codes_per_level=6, head_levels=2, tail_levels=2,
             pca_dim=0)
  table = build_sids(tok, ds, emb, seed=0)  # SIDTable validates uniqueness + prefix-freedom
  tokens = [tuple(row[row >= 0]) for row in table.item_tokens()]
  assert len(set(tokens)) == ds.num_items
  branching = stats.branching(table, ds.is_head)
  if exit_steps is not None:  # SKT: every tail SID leaves the head skeleton at step L^h
    assert branching['skeleton_exit_step_std'] == 0.0
    assert branching['skeleton_exit_step_mean'] == 2.0
  else:
    assert branching['skeleton_exit_distinct_steps'] > 1


def test_variable_length_without_inheritance(data):
  ds, emb = data
  tok = default_tokenize_config()
  tok.update(method='rqk_var', codes_per_level=6, head_levels=2, tail_levels=4, pca_dim=0)
  table = build_sids(tok, ds, emb, seed=0)
  lengths = table.lengths - (table.codes[:, -1] >= 0)  # without the dedup token
  assert set(lengths[ds.is_head].tolist()) == {3}  # 2 codes + EOS
  assert set(lengths[~ds.is_head].tolist()) == {4}
