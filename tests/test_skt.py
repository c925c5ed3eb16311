"""SKT and RQK-h-t through the tokenize stage: the properties Ghost's SKT promises."""

import jax
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.tokenize import skt
from genrec_jax.tokenize import stats
from genrec_jax.tokenize.build import build_sids
from genrec_jax.tokenize.build import default_tokenize_config
from genrec_jax.tokenize.build import reduce_dim
from genrec_jax.tokenize.build import validate_tokenize_config
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


def _anchor_data(data):
  """The fixture's embeddings plus 12 noise dims: PCA to 4 dims changes many neighbours."""
  ds, emb = data
  rng = np.random.default_rng(1)
  wide = np.concatenate([emb, 0.8 * rng.normal(size=(len(emb), 12))], 1).astype(np.float32)
  return ds, wide


def _brute_force_anchor(space, t, heads):
  x = space / np.linalg.norm(space, axis=1, keepdims=True)
  return heads[np.argmax([x[h] @ x[t] for h in heads])]


@pytest.mark.parametrize('anchor_space', ['pca', 'full'])
def test_skt_anchor_space(data, anchor_space, monkeypatch):
  """'pca': every tail item's anchor is its cosine-nearest head in the PCA space X_v of the
  residuals (brute force); 'full': the full-embedding anchor and codes of before."""
  ds, emb = _anchor_data(data)
  tok = default_tokenize_config()
  tok.update(method='skt', codes_per_level=6, head_levels=2, tail_levels=2, pca_dim=4,
             skt_anchor_space=anchor_space)
  calls = []

  def recording_nearest_head(similarity, is_head):
    out = nearest_head(similarity, is_head)
    calls.append(out)
    return out

  monkeypatch.setattr(skt, 'nearest_head', recording_nearest_head)
  table = build_sids(tok, ds, emb, seed=0)
  (anchor,) = calls
  x = reduce_dim(emb, 4)
  heads, tails = np.flatnonzero(ds.is_head), np.flatnonzero(~ds.is_head)
  pca_anchor = np.array([_brute_force_anchor(x, t, heads) for t in tails])
  full_anchor = np.array([_brute_force_anchor(emb, t, heads) for t in tails])
  assert (pca_anchor != full_anchor).sum() >= 5  # the two spaces disagree on some tails
  expected = pca_anchor if anchor_space == 'pca' else full_anchor
  np.testing.assert_array_equal(anchor[tails], expected)
  np.testing.assert_array_equal(table.codes[tails, :2], table.codes[expected, :2])
  if anchor_space == 'full':  # exactly the old tokenize stage: skt_codes(x, full embeddings)
    old_codes, _, _, _ = skt_codes(x, emb, ds.is_head, jax.random.PRNGKey(0), head_levels=2,
                                   tail_levels=2, codes_per_level=6, num_iters=tok.kmeans_iters,
                                   tol=tok.kmeans_tol,
                                   normalize_residuals=tok.normalize_residuals)
    np.testing.assert_array_equal(table.codes[:, :4], old_codes)


def test_skt_anchor_space_is_validated():
  tok = default_tokenize_config()
  tok.skt_anchor_space = 'text'
  with pytest.raises(ValueError, match=r'tokenize\.skt_anchor_space'):
    validate_tokenize_config(tok)
  config = config_lib.base_config('ghost', 'synthetic')
  config_lib.validate(config)  # the default, 'pca', is valid
  config.tokenize.skt_anchor_space = 'text'
  with pytest.raises(ValueError, match=r'tokenize\.skt_anchor_space'):
    config_lib.validate(config)
