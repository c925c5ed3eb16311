"""A new method from parts, defined in this file alone (no edit to shared code): a toy
backbone, an extra contrastive loss term and an exhaustive scorer, registered by name, then
trained and evaluated by the same run as every method."""

import json
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genrec_jax import config as config_lib
from genrec_jax import methods
from genrec_jax import run
from genrec_jax.decode.item_topk import topk_items
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.loss_terms import NLL


class BagOfTokensBackbone:
  """logits of token i = (mean of the history's token vectors + the inputs before i) @ W."""

  def __init__(self, vocab_size: int, dim: int):
    self.vocab_size, self.dim = vocab_size, dim

  def init(self, rng):
    e, w = jax.random.split(rng)
    return {'embed': 0.1 * jax.random.normal(e, (self.vocab_size, self.dim)),
            'out': 0.1 * jax.random.normal(w, (self.dim, self.vocab_size))}

  def continuation_logits(self, params, history, inputs, rng):
    del rng
    valid = (history >= 0)[..., None]
    user = (params['embed'][jnp.maximum(history, 0)] * valid).sum(1) / jnp.maximum(
        valid.sum(1), 1)  # [B, D]
    fed = jnp.where((inputs >= 0)[..., None], params['embed'][jnp.maximum(inputs, 0)], 0.0)
    before = jnp.concatenate([jnp.zeros_like(fed[:, :, :1]), jnp.cumsum(fed, axis=2)], axis=2)
    return jnp.einsum('brld,dv->brlv', user[:, None, None] + before, params['out'])


class Contrastive:
  """InfoNCE of the target SID against K other items' SIDs, by sequence log-probability:
  log Σ_{x ∈ {v} ∪ others} P(x | h) − log P(v | h)."""

  name = 'contrastive'

  def __init__(self, weight: float, others: np.ndarray):
    self.weight = weight
    self.branch_items = others  # [I, K]

  def branch_active(self, items):
    return jnp.ones(items.shape, bool)

  def __call__(self, out):
    others = out.branch_log_probs.sum(-1)  # [B, K]
    target = -out.nll
    values = jax.nn.logsumexp(jnp.concatenate([target[:, None], others], 1), axis=1) - target
    return out.to_targets(values), {'contrastive': out.to_targets(values)}


class ExhaustiveScorer:
  """Exact top k by every item's sequence log-probability (small catalogues)."""

  def topk(self, method, params, batch, k):
    items = jnp.broadcast_to(jnp.arange(method.num_items), (batch['history'].shape[0],
                                                            method.num_items))
    return topk_items(method.score_items(params, batch, items), k, None)

  def tune_on_validation(self, method, params, dataset, eval_config):
    return None, {}


def _default_config():
  return ml_collections.ConfigDict({
      'model': {'dim': 16}, 'decode': {'beam_size': 20}, 'toy': {'weight': 0.5, 'k': 3},
      'tokenize': {'method': 'rq_kmeans', 'levels': 2},
      'train': {'example_kind': 'prefix', 'lr': 1e-2}})


def _build(config, dataset, inputs):
  sids = inputs.sids
  others = np.random.default_rng(config.seed).integers(0, dataset.num_items,
                                                       (dataset.num_items, config.toy.k))
  return GenerativeRecommender(
      BagOfTokensBackbone(sids.vocab_size, config.model.dim), sids, dataset.num_items,
      max_history=config.data.max_history, beam_size=config.decode.beam_size, token_base=0,
      terms=[NLL(), Contrastive(config.toy.weight, others)], scorer=ExhaustiveScorer())


TOY = types.SimpleNamespace(SPEC=methods.MethodSpec(family='generative', needs=('sids',)),
                            default_config=_default_config, build=_build)


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  methods.register('toy_contrastive', TOY)
  config = config_lib.base_config('toy_contrastive', 'synthetic')
  config.data.synthetic.update(num_users=80, num_items=40)
  config.data.kcore = 2
  config.embed.source = 'cooccurrence'
  config.tokenize.update(codes_per_level=8, pca_dim=8)
  config.train.update(batch_size=16, num_steps=30, log_every=10, eval_every=30,
                      warmup_steps=1)
  workdir = str(tmp_path_factory.mktemp('toy'))
  return config, workdir, run.train_and_evaluate(config, workdir)


def test_a_method_made_of_parts_trains_and_evaluates(finished):
  config, workdir, results = finished
  assert 'toy_contrastive' in methods.available()
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    train = [r for r in map(json.loads, f) if r['event'] == 'train']
  assert [r['step'] for r in train] == [10, 20, 30]
  assert train[-1]['loss'] < train[0]['loss']  # it learns
  # The logged loss is NLL + weight · contrastive, as the stage combines named terms.
  for row in train:
    assert row['loss'] == pytest.approx(row['nll'] + config.toy.weight * row['contrastive'],
                                        rel=1e-5)
  test = results['splits']['test']
  assert 0 <= test['hr@10'] <= 1 and test['empty_slots@10'] == 0


def test_its_loss_terms_and_scorer_against_a_plain_computation(finished):
  config, workdir, _ = finished
  _, dataset, method, params = run.load_run(workdir)
  history, _, targets = dataset.histories('test')
  batch = {'history': jnp.asarray(history[:8]), 'target': jnp.asarray(targets[:8]),
           'user': jnp.arange(8)}
  everything = np.asarray(method.score_items(params, batch, jnp.broadcast_to(
      jnp.arange(dataset.num_items), (8, dataset.num_items))))
  # The terms by hand from the sequence log-probabilities of every item.
  log_p_target = everything[np.arange(8), targets[:8]]
  others = method.branching.branch_items[targets[:8]]
  log_p_others = np.take_along_axis(everything, others, axis=1)
  contrastive = np.logaddexp.reduce(np.concatenate([log_p_target[:, None], log_p_others], 1),
                                    axis=1) - log_p_target
  loss, metrics = method.loss_fn(params, batch, None)
  assert float(metrics['nll']) == pytest.approx(-log_p_target.mean(), rel=1e-5)
  assert float(metrics['contrastive']) == pytest.approx(contrastive.mean(), rel=1e-5)
  assert float(loss) == pytest.approx(-log_p_target.mean() + 0.5 * contrastive.mean(),
                                      rel=1e-5)
  # The scorer's top 10 is the brute-force ranking.
  items, _ = method.predict_topk(params, batch, 10)
  for row in range(8):
    assert set(np.asarray(items[row]).tolist()) == set(
        np.argsort(-everything[row], kind='stable')[:10].tolist())
