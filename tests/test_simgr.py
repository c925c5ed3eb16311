"""SimGR (methods/simgr.py) and the token-level estimators it is compared with: exact top-K
against brute force, the loss against the full softmax, the item-level AUO against its
formula, the parallel score by hand, the enumerated exact distribution, and beam recall."""

import copy
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.decode import sid_distribution
from genrec_jax.decode.beam_search import beam_search
from genrec_jax.decode.item_topk import similarity_topk
from genrec_jax.eval import distribution
from genrec_jax.methods import backbones
from genrec_jax.methods import simgr
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.loss_terms import auo_token_mask
from genrec_jax.models import t5 as t5_lib
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.tokenize.trie import build_trie

# ------------------------------------------------------------------- exact top-K --


def _brute_topk(scores, k, exclude=None):
  """Sort by (-score, item id), skipping excluded items; -1 past the last item."""
  out = np.full((scores.shape[0], k), -1)
  for b, row in enumerate(scores):
    banned = set() if exclude is None else {int(x) for x in exclude[b] if x >= 0}
    order = [i for i in sorted(range(len(row)), key=lambda i: (-row[i], i)) if i not in banned]
    out[b, :min(k, len(order))] = order[:k]
  return out


@pytest.mark.parametrize('chunk', [None, 1, 7])
def test_similarity_topk_equals_brute_force_masked_and_unmasked(chunk):
  rng = np.random.default_rng(0)
  queries = rng.integers(-2, 3, (4, 3)).astype(np.float32)  # small integers: many ties
  table = rng.integers(-2, 3, (11, 3)).astype(np.float32)
  scores = queries @ table.T
  exclude = np.array([[0, 3, -1, -1], [-1, -1, -1, -1], [1, 2, 4, 5],
                      [0, 1, 2, 3]])
  exclude[3] = np.argsort(-scores[3], kind='stable')[:4]  # the user's best items are past
  for k, ex in ((5, None), (5, exclude), (11, exclude), (13, None)):
    items, got_scores = similarity_topk(jnp.asarray(queries), jnp.asarray(table), k,
                                        None if ex is None else jnp.asarray(ex), chunk)
    want = _brute_topk(scores, k, ex)
    np.testing.assert_array_equal(np.asarray(items), want)
    real = want >= 0
    np.testing.assert_allclose(np.asarray(got_scores)[real],
                               np.take_along_axis(scores, np.maximum(want, 0), 1)[real])


# ------------------------------------------------------------------ parallel score --


def test_parallel_score_is_the_product_of_per_position_probabilities_by_hand():
  # Two positions; local tokens 0..2, class 3 = 'none' (past the end of a short SID).
  probs = np.array([[[0.5, 0.3, 0.1, 0.1],    # position 0
                     [0.2, 0.2, 0.2, 0.4]]])  # position 1
  local = np.array([[0, 1], [0, 2], [1, -1], [2, 0]])  # item 2 is one token long
  classes = sid_distribution.parallel_classes(local, 3)
  np.testing.assert_array_equal(classes, [[0, 1], [0, 2], [1, 3], [2, 0]])
  got = np.exp(np.asarray(sid_distribution.parallel_log_probs(jnp.log(jnp.asarray(probs)),
                                                              jnp.asarray(classes))))
  np.testing.assert_allclose(got[0], [0.5 * 0.2, 0.5 * 0.2, 0.3 * 0.4, 0.1 * 0.2], rtol=1e-6)


def test_product_of_marginals_is_exact_only_for_a_product_distribution():
  # Items on the full 2 x 2 grid: a product distribution is its own product of marginals.
  local = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  classes = jnp.asarray(sid_distribution.parallel_classes(local, 2))
  product = np.log(np.outer([0.7, 0.3], [0.4, 0.6]).reshape(1, 4))
  got = sid_distribution.product_of_marginals(jnp.asarray(product), classes, 3)
  np.testing.assert_allclose(np.asarray(got), product, rtol=1e-5)
  # A dependent joint (mass on the diagonal) is not: the marginals are (0.5, 0.5) each.
  joint = np.log(np.array([[0.5, 1e-9, 1e-9, 0.5]]))
  got = np.exp(np.asarray(sid_distribution.product_of_marginals(jnp.asarray(joint),
                                                                 classes, 3)))
  np.testing.assert_allclose(got, [[0.25, 0.25, 0.25, 0.25]], atol=1e-6)


# ------------------------------------------- the exact distribution of a token model --

# SKT-like SIDs: head items are two codes + EOS (token 7), tail items three codes.
SKT_TOKENS = np.array([[0, 3, 7], [0, 4, 7], [1, 3, 7], [0, 3, 5], [0, 3, 6], [1, 4, 5],
                       [2, 3, 5], [2, 4, 7]])
VOCAB = 9  # token 8 is never a SID token: its mass is lost under 'vocab' normalisation


def _prefix_logits(item_tokens, num_users, seed, mask_invalid):
  """[B, I, L, V] logits of a fake model that depend only on (user, prefix), as a real
  model's do; with mask_invalid, tokens the trie does not allow get -1e9."""
  rng = np.random.default_rng(seed)
  table = {}
  trie = build_trie(item_tokens)
  nodes = sid_distribution.trie_paths(trie, item_tokens)
  num_items, length = item_tokens.shape
  out = np.zeros((num_users, num_items, length, VOCAB))
  for b in range(num_users):
    for i in range(num_items):
      for t in range(length):
        key = (b, tuple(item_tokens[i, :t]))
        if key not in table:
          table[key] = rng.normal(size=VOCAB) * 2
        logits = table[key].copy()
        if mask_invalid and nodes[i, t] >= 0:
          allowed = trie.step_tokens[t][trie.children[nodes[i, t]] != -1]
          logits[~np.isin(np.arange(VOCAB), allowed)] = -1e9
        out[b, i, t] = logits
  return trie, nodes, out


@pytest.mark.parametrize('tokens', [SKT_TOKENS, np.array([[0, 3], [0, 4], [1, 3], [2, 5]])],
                         ids=['variable_length_with_eos', 'fixed_length'])
def test_enumerated_exact_distribution_sums_to_one_over_the_catalogue(tokens):
  trie, nodes, logits = _prefix_logits(tokens, 3, 0, mask_invalid=False)
  tokens_j, logits_j = jnp.asarray(tokens), jnp.asarray(logits, jnp.float32)
  on_trie = sid_distribution.sequence_log_probs(logits_j, tokens_j, 'trie', trie,
                                                jnp.asarray(nodes))
  np.testing.assert_allclose(np.exp(np.asarray(on_trie)).sum(1), 1.0, rtol=1e-5)
  # Over the full vocabulary the mass on token 8 (no item) is lost: the sum is below 1 and
  # each item's probability is the product of its tokens' full softmax probabilities.
  vocab = np.exp(np.asarray(sid_distribution.sequence_log_probs(logits_j, tokens_j)))
  soft = np.exp(logits - logits.max(-1, keepdims=True))
  soft /= soft.sum(-1, keepdims=True)
  for b in range(3):
    for i, row in enumerate(tokens):
      want = math.prod(soft[b, i, t, tok] for t, tok in enumerate(row) if tok >= 0)
      np.testing.assert_allclose(vocab[b, i], want, rtol=1e-5)
  assert (vocab.sum(1) < 1 - 1e-3).all()
  # A model that puts no mass off the trie: both normalisations give the same distribution,
  # summing to 1 only because the EOS items (head SIDs) are counted too.
  trie, nodes, logits = _prefix_logits(tokens, 3, 1, mask_invalid=True)
  vocab = sid_distribution.sequence_log_probs(jnp.asarray(logits, jnp.float32), tokens_j)
  np.testing.assert_allclose(np.exp(np.asarray(vocab)).sum(1), 1.0, rtol=1e-5)


# ---------------------------------------- a tiny SimGR: loss, AUO, beam vs enumeration --


@pytest.fixture(scope='module')
def tiny():
  """A SimGR on a 2-layer decoder over the SKT-like SIDs above (no dataset needed)."""
  codes = np.where(SKT_TOKENS < 7, SKT_TOKENS - np.array([0, 3, 5])[None, :], -1)
  codes[SKT_TOKENS[:, 2] == 7, 2] = -1
  sids = SIDTable(codes=codes.astype(np.int32), level_sizes=(3, 2, 2),
                  ends_with_eos=SKT_TOKENS[:, 2] == 7, level_names=('a', 'b', 'c'))
  np.testing.assert_array_equal(np.where(sids.item_tokens() >= 0, sids.item_tokens(), -1),
                                SKT_TOKENS)
  model = transformer_lib.Transformer(TransformerConfig(
      vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
      model_type='qwen2', attention_bias=True))
  generator = GenerativeRecommender(backbones.DecoderBackbone(model), sids, len(SKT_TOKENS),
                                    max_history=3, beam_size=4, token_base=0)
  is_head = sids.ends_with_eos
  distractors = np.full((len(SKT_TOKENS), 2), -1)
  distractors[~is_head] = [[0, 1], [2, 0], [1, 7], [0, 2]]  # tail items 3, 4, 5, 6
  free = auo_token_mask(SKT_TOKENS, distractors)

  def make(chunk, auo_weight=0.0, **kwargs):
    terms = [simgr.ItemSoftmaxCE(1.0, chunk, sampled=False), simgr.SIDNLL(0.5),
             simgr.ParallelNLL(0.5, sid_distribution.parallel_classes(SKT_TOKENS, 8))]
    if auo_weight:
      terms.append(simgr.ItemAUO(auo_weight, distractors, free, ~is_head, chunk))
    return simgr.SimGR(generator, eos_token=7, num_sid_tokens=8, terms=terms, **kwargs)

  method = make(3)
  params = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0)))
  rng = np.random.default_rng(0)
  batch = {'history': jnp.asarray(rng.integers(0, 8, (5, 3)), jnp.int32),
           'target': jnp.asarray([3, 0, 5, 6, 1], jnp.int32)}
  batch['history'] = batch['history'].at[0, 0].set(-1)
  return {'make': make, 'method': method, 'params': params, 'batch': batch,
          'distractors': distractors, 'is_head': is_head, 'sids': sids}


def test_simgr_loss_equals_the_full_softmax_of_its_similarities(tiny):
  method, params, batch = tiny['method'], tiny['params'], tiny['batch']

  @jax.jit
  def reference(params):
    scores = method.similarity_scores(params, batch)  # [B, I] cos(u, v) / τ
    item_ce = -jax.nn.log_softmax(scores)[jnp.arange(5), batch['target']]
    sid_nll = method.generator.target_outputs(params['backbone'], batch, None).nll
    log_p = method.position_log_probs(params, method.user_states(params, batch['history']))
    classes = method.classes[batch['target']]  # [B, P]
    parallel = -jnp.take_along_axis(log_p, classes[..., None], -1)[..., 0].sum(-1)
    return scores, item_ce, sid_nll, parallel

  scores, item_ce, sid_nll, parallel = reference(params)
  want = item_ce.mean() + 0.5 * sid_nll.mean() + 0.5 * parallel.mean()
  # The chunked log-partition (3 items per chunk) gives the same values and gradients as one
  # chunk over the catalogue.
  one_chunk = tiny['make'](64)
  step = lambda m: jax.jit(jax.value_and_grad(lambda p: m.loss_fn(p, batch, None),
                                              has_aux=True))(params)
  (loss, metrics), g3 = step(method)
  (loss_64, _), g64 = step(one_chunk)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(loss_64, want, rtol=1e-5)
  np.testing.assert_allclose(metrics['item_ce'], item_ce.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics['sid_nll'], sid_nll.mean(), rtol=1e-5)  # one pass
  # Cosine similarity over a temperature: scores lie in [-1/τ, 1/τ].
  assert np.abs(np.asarray(scores)).max() <= 1 / method.temperature + 1e-4
  for a, b in zip(jax.tree.leaves(g3), jax.tree.leaves(g64)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_item_level_auo_is_its_formula_and_never_moves_the_targets_shared_tokens(tiny):
  method, params, batch = tiny['make'](3, auo_weight=1.0), tiny['params'], tiny['batch']
  auo = method.terms[-1]

  @jax.jit
  def auo_values(p):
    out = simgr.ItemLevelOutputs(
        targets=batch['target'], states=method.user_states(p, batch['history']),
        queries=None, table=method.item_vectors(p))
    out.queries = method.queries(out.states)
    out.vectors_of = lambda items, free: method._item_side(
        method.raw_item_vectors(p, items, free))
    return auo(out)[0]

  values = auo_values(params)
  scores_of = jax.jit(method.similarity_scores)
  probs = jax.nn.softmax(np.asarray(scores_of(params, batch), np.float64))
  for b, v in enumerate(np.asarray(batch['target'])):
    want = 0.0 if tiny['is_head'][v] else -sum(
        math.log(1 - float(probs[b, d])) for d in tiny['distractors'][v] if d >= 0)
    np.testing.assert_allclose(values[b], want, rtol=1e-5, atol=1e-7)

  # Gradient wrt the embedding rows: the distractor's own score reaches only its tokens
  # past the common prefix with the target. Reference: the full softmax, with d's vector
  # pooled from rows whose shared tokens are constants.
  def auo_alone(p):
    o = simgr.ItemLevelOutputs(targets=batch['target'],
                               states=method.user_states(p, batch['history']), queries=None,
                               table=method.item_vectors(p))
    o.queries = method.queries(o.states)
    o.vectors_of = lambda items, free: method._item_side(method.raw_item_vectors(p, items,
                                                                                 free))
    return auo(o)[0].sum()

  def reference(p):
    emb = p['backbone']['embedder']['embedding']
    q = method.queries(method.user_states(p, batch['history']))
    lse = jax.nn.logsumexp(q @ method.item_vectors(p).T, axis=1)
    total = 0.0
    for b, v in enumerate(np.asarray(batch['target'])):
      for d in tiny['distractors'][v]:
        if tiny['is_head'][v] or d < 0:
          continue
        shared = np.cumprod((SKT_TOKENS[d] == SKT_TOKENS[v]) & (SKT_TOKENS[d] >= 0)) > 0
        rows = [jax.lax.stop_gradient(emb[t]) if s else emb[t]
                for t, s in zip(SKT_TOKENS[d], shared) if 0 <= t < 7]
        vec = sum(rows) / len(rows)
        log_p = q[b] @ (vec / jnp.linalg.norm(vec)) - lse[b]
        total = total - jnp.log1p(-jnp.exp(log_p))
    return total

  value, got = jax.jit(jax.value_and_grad(auo_alone))(params)
  want_value, want = jax.jit(jax.value_and_grad(reference))(params)
  np.testing.assert_allclose(value, want_value, rtol=1e-5)
  got = got['backbone']['embedder']['embedding']
  want = want['backbone']['embedder']['embedding']
  # float32 noise of the chunked vs full log-partition is ~1e-5 on entries up to ~7; a
  # missing stop-gradient would move the shared rows by O(0.1).
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_beam_recall_reaches_one_when_the_beam_covers_the_catalogue(tiny):
  """The AR head's exact log-probabilities (every item teacher-forced) equal the beam's
  scores, a beam as wide as the catalogue returns every item (recall 1 at every K), and
  the trie-normalised enumeration sums to 1 (EOS items included)."""
  method, params, batch = tiny['method'], tiny['params'], tiny['batch']
  num_items = len(SKT_TOKENS)
  exact = np.asarray(method.ar_scores(params, batch['history'], 3))  # [B, I]
  items, scores = method.beam_topk(params, batch, num_items, num_items)
  items, scores = np.asarray(items), np.asarray(scores)
  np.testing.assert_allclose(scores, np.take_along_axis(exact, items, 1), rtol=1e-5,
                             atol=1e-5)
  for k in (1, 3, num_items):
    np.testing.assert_array_equal(distribution.topk_recall(exact, items, k), 1.0)
  np.testing.assert_allclose(distribution.missed_mass(exact, items), 0.0, atol=1e-12)
  nodes = jnp.asarray(sid_distribution.trie_paths(method.generator.trie, SKT_TOKENS))
  on_trie = np.asarray(method.ar_scores(params, batch['history'], 3, 'trie', nodes))
  np.testing.assert_allclose(np.exp(on_trie).sum(1), 1.0, rtol=1e-5)
  assert (np.exp(exact).sum(1) < 1).all()  # untrained: mass on tokens off the trie


def test_beam_estimate_kl_and_spearman_by_hand():
  exact = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
  found = np.array([[0, 2]])
  est = np.exp(distribution.beam_estimate(exact, found))
  np.testing.assert_allclose(est, [[0.5, 0.175, 0.15, 0.175]])
  np.testing.assert_allclose(distribution.missed_mass(exact, found), [0.35])
  want_kl = 0.3 * math.log(0.3 / 0.175) + 0.05 * math.log(0.05 / 0.175)
  np.testing.assert_allclose(distribution.kl(exact, np.log(est)), [want_kl])
  np.testing.assert_allclose(distribution.topk_recall(exact, found, 2), [0.5])
  tail = np.array([False, False, True, True])
  np.testing.assert_allclose(distribution.topk_recall(exact, found, 3, tail), [1.0])
  np.testing.assert_allclose(distribution.missed_mass(exact, found, tail), [0.25])
  # Ranks (4, 3, 2, 1) against (4, 2.5, 1, 2.5): ties share their mean rank.
  rho = distribution.spearman(exact, np.log(est))[0]
  want = np.corrcoef([4, 3, 2, 1], [4, 2.5, 1, 2.5])[0, 1]
  np.testing.assert_allclose(rho, want)


@pytest.mark.slow
def test_simgr_on_the_t5_encoder_mean_pools_it_and_masks_past_items(tiny):
  """TIGER's encoder: u is the mean of its states over the history tokens; the decoder is
  the AR head; the exact top-K never returns an excluded item."""
  model = t5_lib.T5(t5_lib.T5Config(vocab_size=16, d_model=16, num_heads=2, head_dim=8,
                                    d_ff=32, num_encoder_layers=1, num_decoder_layers=1,
                                    dropout=0.0))
  generator = GenerativeRecommender(backbones.EncoderDecoderBackbone(model, start_token=8),
                                    tiny['sids'], len(SKT_TOKENS), max_history=3, beam_size=4,
                                    token_base=0)
  method = simgr.SimGR(generator, eos_token=7, num_sid_tokens=8, pool='mean',
                       terms=[simgr.ItemSoftmaxCE(1.0, 3, sampled=False), simgr.SIDNLL(1.0)])
  params = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(1)))
  batch = {**tiny['batch'], 'exclude': jnp.asarray([[0, 1], [2, -1], [-1, -1], [3, 4],
                                                     [5, 6]], jnp.int32)}

  @jax.jit
  def check(params):
    tokens = generator.prompt_tokens(batch['history'])
    states = model.apply({'params': params['backbone']}, tokens, tokens >= 0,
                         method=t5_lib.T5.encode)
    valid = (tokens >= 0)[..., None]
    u = (states * valid).sum(1) / valid.sum(1)
    table = method.item_vectors(params)
    scores = (u / jnp.linalg.norm(u, axis=1, keepdims=True)) @ table.T / method.temperature
    item_ce = -jax.nn.log_softmax(scores)[jnp.arange(5), batch['target']]
    nll = generator.target_outputs(params['backbone'], batch, None).nll
    return method.loss_fn(params, batch, None)[0], (item_ce + nll).mean(), scores

  loss, want, scores = check(params)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  items, _ = method.predict_topk(params, batch, 8)
  np.testing.assert_array_equal(np.asarray(items),
                                _brute_topk(np.asarray(scores), 8, np.asarray(batch['exclude'])))


@pytest.mark.slow
def test_simgr_on_a_pretrained_decoder_checkpoint(tiny, tmp_path):
  """A Hugging Face checkpoint loaded as LC-Rec loads one (vocabulary extended with the SID
  tokens): u is its last hidden state over the SID tokens (offset past its text vocabulary)."""
  from tests import test_decoder  # pylint: disable=g-import-not-at-top
  from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genrec_jax.methods import BuildInputs  # pylint: disable=g-import-not-at-top
  _, weights = test_decoder._write_checkpoint(str(tmp_path), 'qwen2')  # pylint: disable=protected-access
  config = config_lib.base_config('simgr', 'synthetic')
  config.model[('checkpoint' if 'checkpoint' in config.model else 'hf_dir')] = str(tmp_path)
  num = len(SKT_TOKENS)
  dataset = type('Toy', (), {'num_items': num, 'is_head': tiny['is_head'],
                             'item_counts': np.ones(num), 'item_text': [{}] * num})()
  config.data.max_history = 3
  method = simgr.build(config, dataset, BuildInputs(sids=tiny['sids']))
  params = nn.unbox(method.init(jax.random.PRNGKey(0)))
  base = method.generator.token_base
  assert base == 61  # the checkpoint's vocabulary, then the 8 SID tokens
  table = np.asarray(params['backbone']['embedder']['embedding'])
  np.testing.assert_allclose(table[:base], weights['model.embed_tokens.weight'], rtol=1e-6)
  batch = tiny['batch']
  tokens = method.generator.prompt_tokens(batch['history'])
  assert int(tokens.max()) >= base  # SID tokens live past the text vocabulary
  hidden = method.backbone.model.apply({'params': params['backbone']}, tokens, None,
                                       tokens >= 0, return_hidden=True).hidden
  np.testing.assert_allclose(method.user_states(params, batch['history']), hidden[:, -1],
                             rtol=1e-5, atol=1e-5)
  loss, _ = jax.jit(method.loss_fn)(params, batch, None)
  assert np.isfinite(loss)


@pytest.mark.slow
def test_simgr_smoke_run_masks_past_items_exactly(tmp_path):
  """configs/simgr_ins.py:smoke end to end with eval.mask_history, then every scorer of the
  finished run: no past item is ever recommended (the beam scorer refuses the mask)."""
  from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genrec_jax import run  # pylint: disable=g-import-not-at-top
  from genrec_jax.data.pipeline import eval_batches  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file('configs/simgr_ins.py:smoke_skt_auo')
  config.data.synthetic.update(num_users=120, num_items=60)
  config.data.kcore = 2
  config.eval.mask_history = True
  config.data.tfds_dir = str(tmp_path / 'tfds')
  results = run.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(results['splits']['test']['hr@10'])
  loaded = run.load_run(str(tmp_path / 'run'))
  batch, _ = next(eval_batches(loaded.dataset, 'test', 32, mask_history=True))
  for scorer in ('similarity', 'parallel', 'exact', 'beam'):
    method = copy.copy(loaded.method)  # a new object: jit keys on the method
    method.scorer = scorer
    if scorer == 'beam':
      with pytest.raises(ValueError, match='cannot mask past items'):
        method.predict_topk(loaded.params, batch, 10)
      continue
    items = np.asarray(method.predict_topk(loaded.params, batch, 10)[0])
    assert (items >= 0).all()
    for row, past in zip(items, batch['exclude']):
      assert not set(row) & set(past[past >= 0]), scorer


@pytest.mark.slow
def test_text_item_vectors_and_the_sampled_softmax(tiny):
  """simgr.item_vectors='text': v = text @ W (W learned); simgr.softmax='sampled': the
  item loss is the logQ-corrected sampled softmax over the negatives drawn from the step's
  rng."""
  from genrec_jax.losses import sampled_softmax_cross_entropy  # pylint: disable=g-import-not-at-top
  text = np.random.default_rng(2).normal(size=(len(SKT_TOKENS), 5)).astype(np.float32)
  log_q = np.log(np.arange(1, len(SKT_TOKENS) + 1) / 36.0)
  method = simgr.SimGR(tiny['method'].generator, eos_token=7, num_sid_tokens=8,
                       terms=[simgr.ItemSoftmaxCE(1.0, 3, sampled=True)], text_embeddings=text,
                       sampling_log_q=log_q, num_negatives=6)
  params = nn.unbox(jax.jit(method.init)(jax.random.PRNGKey(0)))
  np.testing.assert_allclose(method.raw_item_vectors(params), text @ params['text_adapter'],
                             rtol=1e-5)
  batch, rng = tiny['batch'], jax.random.PRNGKey(3)
  loss, grads = jax.jit(jax.value_and_grad(lambda p: method.loss_fn(p, batch, rng)[0]))(params)
  negatives = jax.random.categorical(jax.random.split(rng)[1], jnp.asarray(log_q), shape=(6,))
  want = sampled_softmax_cross_entropy(
      method.queries(method.user_states(params, batch['history'])),
      method.item_vectors(params), batch['target'], negatives, jnp.asarray(log_q)).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert np.abs(np.asarray(grads['text_adapter'])).sum() > 0
