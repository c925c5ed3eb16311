"""IFairLRS reweighting and re-ranking, augmentation and substitution, on hand-made cases."""

import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data.raw import RawData
from genrec_jax.methods import augment
from genrec_jax.methods import ifairlrs


def _dataset(sequences, head_ratio):
  rows = [(u, item, t) for u, seq in sequences.items() for t, item in enumerate(seq)]
  users, items, times = zip(*rows)
  raw = RawData(name='t', users=np.array(users), items=np.array(items),
                timestamps=np.array(times, float), item_text={}, source_files=())
  return dataset_lib.preprocess(raw, kcore=1, max_history=5, head_ratio=head_ratio,
                                num_groups=2)


def test_group_weights_by_hand():
  # Training parts (items[:-2]): u1 a a2 b, u2 a c, u3 a b d -> counts a=3, b=2, others 1.
  ds = _dataset({'u1': ['a', 'a2', 'b', 'x', 'y'], 'u2': ['a', 'c', 'x', 'y'],
                 'u3': ['a', 'b', 'd', 'x', 'y']}, head_ratio=0.25)
  head = {ds.item_ids[i] for i in np.flatnonzero(ds.is_head)}
  assert head == {'a', 'b'}  # top ceil(0.25 * 7) = 2 items
  # Examples (history -> target): u1 [a]->a2, [a a2]->b; u2 [a]->c; u3 [a]->b, [a b]->d.
  # History slots: a a a2 a a a b = 7 slots, 6 head; targets: a2 b c b d = 2 head of 5.
  hist_share = np.array([6 / 7, 1 / 7])  # (head, tail)
  target_share = np.array([2 / 5, 3 / 5])
  raw = hist_share / target_share
  np.testing.assert_allclose(ifairlrs.group_weights(ds, 2, normalize=False), raw, rtol=1e-6)
  expected = raw / np.mean([raw[1], raw[0], raw[1], raw[0], raw[1]])  # mean over examples 1
  np.testing.assert_allclose(ifairlrs.group_weights(ds, 2), expected, rtol=1e-6)


def test_group_weights_over_popularity_groups_by_hand():
  # Same data; counts a=3, b=2, then a2 c d x y = 1 each (ties by item id). Items ranked by
  # count: a b, then the count-1 items in id order; 7 items in 3 groups: rank*3//7 ->
  # ranks 0-2 group 0, 3-4 group 1, 5-6 group 2.
  ds = _dataset({'u1': ['a', 'a2', 'b', 'x', 'y'], 'u2': ['a', 'c', 'x', 'y'],
                 'u3': ['a', 'b', 'd', 'x', 'y']}, head_ratio=0.25)
  groups = ifairlrs.item_groups(ds, 3)
  group = {ds.item_ids[i]: int(groups[i]) for i in range(ds.num_items)}
  assert group['a'] == group['b'] == 0
  # Histories a a a2 a a a b; targets a2 b c b d (see test_group_weights_by_hand).
  hist = [group[v] for v in 'a a a2 a a a b'.split()]
  tgt = [group[v] for v in 'a2 b c b d'.split()]
  hist_share = np.bincount(hist, minlength=3) / len(hist)
  target_share = np.bincount(tgt, minlength=3) / len(tgt)
  expected = hist_share / np.maximum(target_share, 1e-12)
  np.testing.assert_allclose(ifairlrs.group_weights(ds, 3, normalize=False), expected,
                             rtol=1e-6)
  # The default (0) is the dataset's own popularity groups (data.num_groups; 2 here).
  np.testing.assert_array_equal(ifairlrs.item_groups(ds, 0), ds.item_group)


def test_group_weights_fully_by_hand():
  # 1 user: training part p q r (x, y are valid/test). Counts p=q=r=1, x=y=0; head =
  # top ceil(0.25 * 5) = 2 items, ties by item id: p and q.
  ds = _dataset({'u': ['p', 'q', 'r', 'x', 'y']}, head_ratio=0.25)
  assert {ds.item_ids[i] for i in np.flatnonzero(ds.is_head)} == {'p', 'q'}
  # Examples: [p]->q, [p q]->r. History slots p p q: 3 head of 3 (share 1, tail 0).
  # Targets q r: share 1/2 each. w_head = 1 / (1/2) = 2; w_tail = 0 / (1/2) = 0.
  np.testing.assert_allclose(ifairlrs.group_weights(ds, 2, normalize=False), [2.0, 0.0])
  # Normalised: mean over the two examples (2 + 0) / 2 = 1 already.
  np.testing.assert_allclose(ifairlrs.group_weights(ds, 2), [2.0, 0.0])


class _FixedBeam:
  """A method whose beam is always the same 5 candidates."""

  def beam_topk(self, params, batch, k):
    del params, batch
    items = jnp.array([[4, 2, 7, 1, -1]])
    scores = jnp.array([[-1.0, -1.2, -1.5, -3.0, -1e30]])
    return items[:, :k], scores[:, :k]


def test_reranking_applies_the_stated_penalty():
  counts = np.zeros(8)
  counts[[4, 2, 7, 1]] = [100, 10, 0, 0]
  scorer = ifairlrs.RerankedBeam(counts, rr_lambda=0.2, candidates=5)
  method = _FixedBeam()
  items, scores = scorer.topk(method, None, {}, 3)
  # s' = s − 0.2·log(1 + c): 4: −1 − 0.92 = −1.92; 2: −1.2 − 0.48 = −1.68; 7: −1.5; 1: −3.
  assert items.tolist() == [[7, 2, 4]]
  np.testing.assert_allclose(scores[0], [-1.5, -1.2 - 0.2 * np.log(11),
                                         -1.0 - 0.2 * np.log(101)], rtol=1e-6)
  # λ is an argument of the jitted re-ranking, so changing it takes effect.
  scorer.rr_lambda = 0.0
  assert scorer.topk(method, None, {}, 3)[0].tolist() == [[4, 2, 7]]
  scorer.rr_lambda = 1.0  # 4: −1 − 4.62; 2: −1.2 − 2.40 = −3.60; 7: −1.5; 1: −3
  assert scorer.topk(method, None, {}, 4)[0].tolist() == [[7, 1, 2, 4]]


class _Beam:
  """A beam of `beam_size` items per user; asking for more than the beam is an error."""
  beam_size = 4

  def __init__(self, items, scores):
    self.items, self.scores = jnp.asarray(items), jnp.asarray(scores)

  def beam_topk(self, params, batch, k):
    del params
    assert k <= self.beam_size, 'the re-ranking must not widen the beam'
    n = len(batch['user'])
    return self.items[batch['user'] % len(self.items)][:n, :k], self.scores[
        batch['user'] % len(self.items)][:n, :k]


def test_rr_reranks_the_table_beam_and_picks_lambda_on_valid():
  # 3 users; valid targets are the second-last items (x for every user, see _dataset).
  ds = _dataset({'u1': ['a', 'b', 'x', 'y'], 'u2': ['a', 'b', 'c', 'x', 'y'],
                 'u3': ['a', 'c', 'x', 'y']}, head_ratio=0.25)
  idx = {v: i for i, v in enumerate(ds.item_ids)}
  counts = ds.item_counts
  assert [counts[idx[v]] for v in 'abcx'] == [3, 2, 2, 0]
  # Beam of every user: a (−1.0), b (−1.1), x (−1.5), c (−2.0); only a penalty lifts x.
  beam = [[idx['a'], idx['b'], idx['x'], idx['c']]]
  scores = [[-1.0, -1.1, -1.5, -2.0]]
  scorer = ifairlrs.RerankedBeam(counts, rr_lambda=0.0, candidates=4,
                                 lambda_grid=(1.0, 0.0, 0.25, 2.0), select_metric='ndcg@1')
  method = _Beam(beam, scores)
  eval_config = config_lib.base_config('ifairlrs', 'synthetic').eval
  eval_config.ks = (1, 2, 4)
  eval_config.batch_size = 2
  # λ = 0: x third (ndcg@1 0). λ = 0.25: a −1 − .25·log 4 = −1.35, b −1.1 − .25·log 3 =
  # −1.37, x −1.5: x third. λ = 1: x −1.5, b −2.20, a −2.39, c −3.10: x first (ndcg@1 1).
  selection = scorer.select_rr_lambda(method, None, ds, eval_config)
  assert selection['valid_by_lambda'] == {'0.0': 0.0, '0.25': 0.0, '1.0': 1.0, '2.0': 1.0}
  assert selection['rr_lambda'] == 1.0 and scorer.rr_lambda == 1.0  # ties: smaller λ
  assert selection['valid_metrics']['ndcg@1'] == 1.0
  items, _ = scorer.topk(method, None, {'user': np.arange(3)}, 4)
  assert items[0].tolist() == [idx['x'], idx['b'], idx['a'], idx['c']]


@pytest.mark.parametrize('mode', ['substitute', 'augment'])
def test_head_items_in_training_parts_are_replaced_by_their_most_similar_tail(mode):
  ds = _dataset({'u1': ['a', 'b', 'c', 'x', 'y'], 'u2': ['a', 'd', 'e', 'x', 'y'],
                 'u3': ['a', 'c', 'x', 'y']}, head_ratio=0.2)
  names = list(ds.item_ids)
  is_head = ds.is_head
  assert {names[i] for i in np.flatnonzero(is_head)} == {'a', 'c'}
  emb = np.eye(len(names))
  emb[names.index('b'), names.index('a')] = 2.0  # b is the tail item most like a
  emb[names.index('e'), names.index('c')] = 2.0  # e is the tail item most like c
  data = augment.training_data(ds, emb, mode, p=1.0, seed=0)
  seq = lambda d, u: [names[i] for i in d.sequence(u)]
  offset = ds.num_users if mode == 'augment' else 0
  users = list(ds.user_ids)
  assert seq(data, offset + users.index('u1')) == ['b', 'b', 'e', 'x', 'y']
  assert seq(data, offset + users.index('u3')) == ['b', 'e', 'x', 'y']
  for u in range(ds.num_users):  # valid and test items are never replaced
    assert seq(data, offset + u)[-2:] == seq(ds, u)[-2:]
  if mode == 'augment':
    assert data.num_users == 2 * ds.num_users
    assert seq(data, users.index('u1')) == ['a', 'b', 'c', 'x', 'y']  # originals kept
  np.testing.assert_array_equal(data.item_counts, ds.item_counts)
  none = augment.training_data(ds, emb, mode, p=0.0, seed=0)
  assert seq(none, offset + users.index('u1')) == ['a', 'b', 'c', 'x', 'y']
