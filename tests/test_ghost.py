"""Ghost: AUO by hand and its gradient direction, the undesired collection by brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.data import dataset as dataset_lib
from genrec_jax.data import synthetic
from genrec_jax.data.pipeline import train_iterator
from genrec_jax.methods import backbones
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.loss_terms import AUO
from genrec_jax.methods.loss_terms import NLL
from genrec_jax.methods.loss_terms import auo_token_mask
from genrec_jax.methods.ghost import undesired_collection
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig
from genrec_jax.tokenize.sid_table import SIDTable

# Items 0..3, 2-token SIDs over tokens a0 a1 (level a) and b0 b1 (level b): vocabulary 4.
SIDS = SIDTable(codes=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.int32),
                level_sizes=(2, 2), ends_with_eos=np.zeros(4, bool), level_names=('a', 'b'))


class _FixedLogits:
  """continuation_logits independent of params' values: logits[i] = table[i] (+ w·0)."""

  def __init__(self, table):
    self.table = jnp.asarray(table, jnp.float32)  # [L, V]

  def init(self, rng):
    del rng
    return {'w': jnp.zeros(())}

  def continuation_logits(self, params, history, inputs, rng):
    del rng, history
    batch, num_cont, length = inputs.shape[0], inputs.shape[1], inputs.shape[2] + 1
    return jnp.broadcast_to(self.table + params['w'], (batch, num_cont, length,
                                                       self.table.shape[-1]))


def test_auo_by_hand():
  table = np.array([[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 3.0, 0.0]])
  # Target item 3 (tokens a1=1, b1=3) is tail; its distractors are items 0 and 1 (heads).
  method = GenerativeRecommender(
      _FixedLogits(table), SIDS, 4, max_history=2, beam_size=2, token_base=0,
      terms=[NLL(), AUO(0.5, SIDS.item_tokens(), np.array([[0, 1]] * 4),
                        np.array([False, False, True, True]))])
  params = method.init(None)
  batch = {'history': jnp.array([[2, -1], [3, 2]]), 'target': jnp.array([3, 0])}
  terms = method.per_target_metrics(params, batch, None)
  nll, auo = terms['nll'], terms['auo']
  p = np.exp(table) / np.exp(table).sum(1, keepdims=True)  # rows: step 0, step 1
  # Target 3 = tokens (1, 3): NLL = −log p0[1] − log p1[3].
  assert nll[0] == pytest.approx(-np.log(p[0, 1]) - np.log(p[1, 3]), rel=1e-5)
  # Distractor 0 = (0, 2), distractor 1 = (0, 3).
  expected = -(np.log(1 - p[0, 0]) + np.log(1 - p[1, 2]) + np.log(1 - p[0, 0]) +
               np.log(1 - p[1, 3]))
  assert auo[0] == pytest.approx(expected, rel=1e-5)
  assert auo[1] == 0.0  # target 0 is a head item: no AUO
  loss, metrics = method.loss_fn(params, batch, None)
  assert loss == pytest.approx(np.mean(nll) + 0.5 * np.mean(auo), rel=1e-5)
  assert metrics['auo'] == pytest.approx(np.mean(auo), rel=1e-5)


def test_auo_skips_the_distractor_tokens_shared_with_the_target():
  """A distractor sharing the target's first token is only penalised from token 1 on."""
  table = np.array([[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 3.0, 0.0]])
  # Target 3 = (a1, b1) = tokens (1, 3). Distractor 2 = (1, 2) shares token 0 with it;
  # distractor 1 = (0, 3) differs at token 0, so its token 1 (equal to the target's) counts.
  method = GenerativeRecommender(
      _FixedLogits(table), SIDS, 4, max_history=2, beam_size=2, token_base=0,
      terms=[NLL(), AUO(0.5, SIDS.item_tokens(), np.array([[2, 1]] * 4),
                        np.array([False, False, True, True]))])
  params = method.init(None)
  batch = {'history': jnp.array([[2, -1]]), 'target': jnp.array([3])}
  auo = method.per_target_metrics(params, batch, None)['auo']
  p = np.exp(table) / np.exp(table).sum(1, keepdims=True)
  expected = -(np.log(1 - p[1, 2]) + np.log(1 - p[0, 0]) + np.log(1 - p[1, 3]))
  assert auo[0] == pytest.approx(expected, rel=1e-5)
  # The old behaviour also pushed down the target's own first token a1 (p[0, 1]).
  old = expected - np.log(1 - p[0, 1])
  assert float(auo[0]) != pytest.approx(old, rel=1e-3)  # fails on the old behaviour


def test_auo_token_mask_by_hand():
  # Variable-length tokens (-1 padded), e.g. SKT heads ending early.
  tokens = np.array([[0, 4, 8, -1],    # 0 head
                     [0, 4, 9, 12],    # 1 tail: shares (0, 4) with item 0
                     [1, 4, 8, -1],    # 2 head: differs at token 0
                     [0, 5, 8, 12]])   # 3 tail: shares (0,) with items 0, 1
  distractors = np.array([[1, 3], [0, 2], [1, 3], [0, 1]])
  mask = auo_token_mask(tokens, distractors)
  assert mask.shape == (4, 2, 4)
  assert mask[1, 0].tolist() == [False, False, True, False]  # item 0 for 1: lcp 2, padding
  assert mask[1, 1].tolist() == [True, True, True, False]  # item 2 for 1: lcp 0
  assert mask[3, 0].tolist() == [False, True, True, False]  # item 0 for 3: lcp 1
  assert mask[3, 1].tolist() == [False, True, True, True]  # item 1 for 3: lcp 1, then 12 counts
  assert mask[0, 1].tolist() == [False, True, True, True]


def test_sequence_auo_with_shared_prefix_distractors_equals_per_prefix():
  """Whole-sequence AUO equals per-prefix AUO when distractors share the target's prefix,
  and both differ from the unmasked sum."""
  raw = synthetic.generate(num_users=40, num_items=32, mean_length=8, seed=3)
  ds = dataset_lib.preprocess(raw, kcore=2, max_history=4)
  num_items = ds.num_items
  codes = np.stack([np.arange(num_items) // 8, np.arange(num_items) % 8], 1).astype(np.int32)
  sids = SIDTable(codes=codes, level_sizes=(num_items // 8 + 1, 8),
                  ends_with_eos=np.zeros(num_items, bool), level_names=('a', 'b'))
  is_tail = np.arange(num_items) % 2 == 1
  # Distractors: the head item just before (same first token) and one from another group.
  own = np.arange(num_items) - 1 + (np.arange(num_items) % 2 == 0)
  other = (own + 8) % (num_items - num_items % 2)
  distractors = np.stack([np.maximum(own, 0), other - other % 2], 1)
  config = TransformerConfig(
      vocab_size=sids.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
      num_attention_heads=2, model_type='llama', tie_word_embeddings=True)
  method = GenerativeRecommender(
      backbones.DecoderBackbone(transformer_lib.Transformer(config)), sids, num_items,
      max_history=ds.max_history, beam_size=4, token_base=0,
      terms=[NLL(), AUO(1.0, sids.item_tokens(), distractors, is_tail)])
  tokens = method.item_tokens_host
  assert (tokens[distractors[is_tail, 0], 0] == tokens[is_tail, 0]).all()
  params = method.init(jax.random.PRNGKey(0))
  batch = next(train_iterator(ds, batch_size=6, seed=0, kind='sequence', targets_per_chunk=32))
  width = batch['items'].shape[1]
  history, targets = [], []
  for items, is_target in zip(batch['items'], batch['is_target']):
    for col in np.flatnonzero(is_target):
      history.append(np.pad(items[:col], (width - col, 0), constant_values=-1))
      targets.append(items[col])
  prefix = {'history': jnp.asarray(np.stack(history)), 'target': jnp.asarray(targets)}
  seq = {k: jnp.asarray(v) for k, v in batch.items()}
  seq_auo = method.per_target_metrics(params, seq, None)['auo']
  pre_auo = method.per_target_metrics(params, prefix, None)['auo']
  np.testing.assert_allclose(np.asarray(seq_auo)[np.asarray(seq['is_target'])], pre_auo,
                             rtol=1e-4, atol=1e-5)
  assert (np.asarray(pre_auo) > 0).sum() > 5
  method.branching.mask = jnp.asarray(tokens[distractors] >= 0)  # the old, unmasked rule
  old_auo = method.per_target_metrics(params, prefix, None)['auo']
  tail = np.asarray(is_tail)[np.asarray(targets)]
  assert (np.asarray(old_auo)[tail] > np.asarray(pre_auo)[tail] + 1e-4).all()


def test_auo_gradient_lowers_head_distractors_and_raises_the_tail_target():
  sids = SIDTable(codes=np.array([[i // 4, i % 4] for i in range(16)], np.int32),
                  level_sizes=(4, 4), ends_with_eos=np.zeros(16, bool), level_names=('a', 'b'))
  config = TransformerConfig(
      vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
      num_attention_heads=2, model_type='llama', tie_word_embeddings=True)
  is_tail = np.arange(16) >= 8
  distractors = np.tile([0, 1, 5], (16, 1))  # head items; first tokens a0, a0, a1
  method = GenerativeRecommender(
      backbones.DecoderBackbone(transformer_lib.Transformer(config)), sids, 16,
      max_history=3, beam_size=4, token_base=0,
      terms=[NLL(), AUO(1.0, sids.item_tokens(), distractors, is_tail)])
  params = method.init(jax.random.PRNGKey(0))
  batch = {'history': jnp.array([[3, 9, 12]]), 'target': jnp.array([14])}  # target a3 b2

  def first_token_probs(p):
    hist = jnp.array([[3, 4 + 3, 2, 4 + 1, 3, 4 + 0]])  # SID tokens of items 3, 9, 12
    logits = method.backbone.continuation_logits(p, hist, jnp.zeros((1, 1, 0), jnp.int32),
                                                 None)
    return jax.nn.softmax(logits[0, 0, 0])

  auo_only = lambda p: method.per_target_metrics(p, batch, None)['auo'].sum()
  grads = jax.grad(auo_only)(params)
  stepped = jax.tree.map(lambda w, g: w - 0.05 * g, params, grads)
  before, after = first_token_probs(params), first_token_probs(stepped)
  assert after[0] < before[0] and after[1] < before[1]  # penalised head tokens a0, a1
  assert after[3] > before[3]  # the tail target's first token a3 gains


def _brute_force(emb, tokens, is_head, k_a, k_b):
  x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  out = {}
  for t in np.flatnonzero(~is_head):
    heads = sorted(np.flatnonzero(is_head), key=lambda h: (-(x[t] @ x[h]), h))[:k_a]

    def lcp(h):
      n = 0
      while n < tokens.shape[1] and tokens[t, n] >= 0 and tokens[t, n] == tokens[h, n]:
        n += 1
      return n

    out[t] = sorted(heads, key=lambda h: (lcp(h), -(x[t] @ x[h])))[:k_b]
  return out


@pytest.mark.parametrize('seed', [0, 1])
def test_undesired_collection_equals_brute_force(seed):
  rng = np.random.default_rng(seed)
  num_items = 60
  emb = rng.normal(size=(num_items, 8))
  tokens = rng.integers(0, 3, size=(num_items, 3))
  tokens[rng.random(num_items) < 0.3, 2] = -1  # variable length
  is_head = rng.random(num_items) < 0.3
  got = undesired_collection(emb, tokens, is_head, k_a=10, k_b=4, chunk=7)
  expected = _brute_force(emb, tokens, is_head, 10, 4)
  for t, heads in expected.items():
    assert got[t].tolist() == heads
  assert (got[is_head] == -1).all()
