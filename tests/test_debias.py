"""IFairLRS reweighting and re-ranking, augmentation and substitution, on hand-made cases."""

import jax.numpy as jnp
import numpy as np
import pytest

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
  hist_share = np.array([1 / 7, 6 / 7])  # (tail, head)
  target_share = np.array([3 / 5, 2 / 5])
  raw = hist_share / target_share
  expected = raw / np.mean([raw[0], raw[1], raw[0], raw[1], raw[0]])
  np.testing.assert_allclose(ifairlrs.group_weights(ds), expected, rtol=1e-6)


class _FixedTopk:
  trainable = True

  def predict_topk(self, params, batch, k):
    del params, batch
    items = jnp.array([[4, 2, 7, 1, -1]])
    scores = jnp.array([[-1.0, -1.2, -1.5, -3.0, -1e30]])
    return items[:, :k], scores[:, :k]


def test_reranking_applies_the_stated_penalty():
  counts = np.zeros(8)
  counts[[4, 2, 7, 1]] = [100, 10, 0, 0]
  method = ifairlrs.Reranked(_FixedTopk(), counts, rr_lambda=0.2, candidates=5)
  items, scores = method.predict_topk(None, {}, 3)
  # s' = s − 0.2·log(1 + c): 4: −1 − 0.92 = −1.92; 2: −1.2 − 0.48 = −1.68; 7: −1.5; 1: −3.
  assert items.tolist() == [[7, 2, 4]]
  np.testing.assert_allclose(scores[0], [-1.5, -1.2 - 0.2 * np.log(11),
                                         -1.0 - 0.2 * np.log(101)], rtol=1e-6)
  assert method.trainable  # everything else is the wrapped method's


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
