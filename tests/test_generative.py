"""The shared generative stage: whole-sequence training equals per-prefix training; decoding
returns the exact top-K; SKT-style variable-length SIDs work."""

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
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig
from genrec_jax.tokenize.sid_table import SIDTable


@pytest.fixture(scope='module')
def ds():
  raw = synthetic.generate(num_users=60, num_items=40, mean_length=10, seed=4)
  return dataset_lib.preprocess(raw, kcore=2, max_history=4)


def _fixed_sids(num_items, seed=0):
  rng = np.random.default_rng(seed)
  codes = np.stack([rng.permutation(64)[:num_items] // 16, rng.permutation(64)[:num_items] % 16,
                    np.arange(num_items) % 4], axis=1)
  codes[:, 2] = np.arange(num_items)  # unique last level
  return SIDTable(codes=codes.astype(np.int32), level_sizes=(4, 16, num_items),
                  ends_with_eos=np.zeros(num_items, bool), level_names=('a', 'b', 'c'))


def _skt_sids(num_items):
  """Head items (even ids): 2 levels + EOS; tail items: the same 2 levels + 1 tail level."""
  codes = np.full((num_items, 3), -1, np.int32)
  codes[:, 0] = np.arange(num_items) // 8
  codes[:, 1] = np.arange(num_items) % 8 // 2
  is_head = np.arange(num_items) % 2 == 0
  codes[~is_head, 2] = np.arange(num_items)[~is_head] % 5
  return SIDTable(codes=codes, level_sizes=(num_items // 8 + 1, 4, 5), ends_with_eos=is_head,
                  level_names=('a', 'b', 't'))


def _method(sids, num_items, max_history, beam_size=5, **parts):
  config = TransformerConfig(
      vocab_size=sids.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, model_type='qwen2', attention_bias=True,
      tie_word_embeddings=True)
  backbone = backbones.DecoderBackbone(transformer_lib.Transformer(config))
  return GenerativeRecommender(backbone, sids, num_items, max_history=max_history,
                               beam_size=beam_size, token_base=0, **parts)


def _ghost_terms(sids, num_items):
  """AUO on odd (tail) targets with 3 fixed head distractors, and per-item NLL weights."""
  rng = np.random.default_rng(2)
  is_tail = np.arange(num_items) % 2 == 1
  heads = np.flatnonzero(~is_tail)
  weights = jnp.asarray(1.0 + rng.random(num_items), jnp.float32)
  return dict(terms=[NLL(weight_of=lambda targets: weights[targets]),
                     AUO(0.3, sids.item_tokens(), rng.choice(heads, size=(num_items, 3)),
                         is_tail)])


@pytest.mark.parametrize('make_sids, ghost, chunk', [
    (_fixed_sids, False, 32), (_skt_sids, False, 32), (_skt_sids, True, 32),
    (_skt_sids, True, 3)])
def test_whole_sequence_loss_and_grads_equal_per_prefix(ds, make_sids, ghost, chunk):
  """With AUO + weights too: distractors packed after the stream equal per-prefix ones."""
  sids = make_sids(ds.num_items)
  parts = _ghost_terms(sids, ds.num_items) if ghost else {}
  method = _method(sids, ds.num_items, ds.max_history, **parts)
  params = method.init(jax.random.PRNGKey(0))
  batch = next(train_iterator(ds, batch_size=6 if chunk == 32 else 16, seed=0, kind='sequence',
                              targets_per_chunk=chunk))
  # The same targets as per-prefix examples whose history is the chunk before them.
  width = batch['items'].shape[1]
  history, targets = [], []
  for items, is_target in zip(batch['items'], batch['is_target']):
    for col in np.flatnonzero(is_target):
      history.append(np.pad(items[:col], (width - col, 0), constant_values=-1))
      targets.append(items[col])
  prefix = {'history': jnp.asarray(np.stack(history)), 'target': jnp.asarray(targets)}
  seq = {k: jnp.asarray(v) for k, v in batch.items()}
  num_targets = len(targets)

  def seq_total(p):
    return method.loss_fn(p, seq, None)[0] * num_targets

  def prefix_total(p):
    return method.loss_fn(p, prefix, None)[0] * num_targets

  if ghost:  # the AUO terms, target by target
    seq_terms = jax.jit(method.per_target_metrics)(params, seq, None)
    pre_terms = jax.jit(method.per_target_metrics)(params, prefix, None)
    (seq_nll, seq_auo), (pre_nll, pre_auo) = [(t['nll'], t['auo']) for t in (seq_terms,
                                                                           pre_terms)]
    mask = np.asarray(seq['is_target'])
    np.testing.assert_allclose(np.asarray(seq_nll)[mask], pre_nll, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(seq_auo)[mask], pre_auo, rtol=1e-4, atol=1e-5)
    assert (np.asarray(pre_auo) > 0).sum() > 5

  seq_value, seq_grads = jax.jit(jax.value_and_grad(seq_total))(params)
  prefix_value, prefix_grads = jax.jit(jax.value_and_grad(prefix_total))(params)
  assert num_targets > 20
  np.testing.assert_allclose(seq_value, prefix_value, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(seq_grads), jax.tree.leaves(prefix_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('make_sids', [_fixed_sids, _skt_sids])
def test_beam_search_with_full_beam_equals_brute_force_ranking(ds, make_sids):
  sids = make_sids(ds.num_items)
  method = _method(sids, ds.num_items, ds.max_history, beam_size=ds.num_items)
  params = method.init(jax.random.PRNGKey(1))
  history, _, _ = ds.histories('test')
  batch = {'history': jnp.asarray(history[:5]), 'user': jnp.arange(5)}
  items, scores = method.predict_topk(params, batch, 10)
  all_items = jnp.broadcast_to(jnp.arange(ds.num_items), (5, ds.num_items))
  brute = np.asarray(method.score_items(params, batch, all_items))
  for row in range(5):
    order = np.argsort(-brute[row], kind='stable')[:10]
    np.testing.assert_allclose(np.asarray(scores[row]), brute[row][order], rtol=1e-4,
                               atol=1e-5)
    assert set(np.asarray(items[row]).tolist()) == set(order.tolist())
