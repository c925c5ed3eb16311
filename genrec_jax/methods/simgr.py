r"""SimGR (Simply Generative Recommendation; "SimGR: Escaping the Pitfalls of Generative
Decoding in LLM-based Recommendation", 2026): the item-level distribution is modelled
directly, as a softmax of similarities in a latent space the history and the items share;
no beam search, no token-level factorisation.

  python -m genrec_jax.main --config=configs/simgr_ins.py:cpu --workdir=runs/simgr

Model (u the user state, v_i the item vectors, τ the temperature, s the similarity):
  u      = pool(backbone.history_states(history as SID tokens))   'last' (the decoder's last
           hidden state: it has read the whole causal history) or 'mean' (the T5 encoder's
           states averaged over the history tokens: Sentence-T5 found mean pooling of a T5
           encoder the best sentence vector, and a bidirectional encoder has no last state
           that summarises the rest)
  v_i    = mean of the input embeddings of item i's SID code tokens (EOS left out: it is the
           same token for every head item under SKT, a constant, not a feature of the item),
           or (simgr.item_vectors='text') the embed stage's text vector through a learned
           linear map
  s(u,v) = cos(u, v) (simgr.similarity='cosine'; 'dot': u · v)
  P(i|h) = softmax_i(s(u, v_i) / τ) over the WHOLE catalogue
  L_item = −log P(target | h), the log-partition computed simgr.chunk_size items at a time
           (losses.item_softmax_cross_entropy: memory per chunk, values and gradients equal
           the full softmax); simgr.softmax='sampled': sampled softmax over
           simgr.num_negatives items drawn per step from Q (uniform or ∝ training count + 1)
           with the logQ correction (losses.sampled_softmax_cross_entropy)
  top-K  = exact top-K of s(u, v_i) over every item, past items left out exactly when
           eval.mask_history (decode.item_topk.similarity_topk; decode.chunk_size > 0 scores
           that many items at a time)

Backbones (simgr.backbone; the generative rows' own, built by their modules):
  'lcrec'  the decoder-only LM of methods/lcrec.py: from scratch on SID tokens, or a
           pretrained checkpoint loaded exactly as LC-Rec loads one (model.checkpoint, the
           vocabulary extended with the SID tokens; with instructions.tasks=('seqrec',) the
           history is LC-Rec's seqrec prompt and u its last hidden state)
  'tiger'  the T5 encoder–decoder of methods/tiger.py (u pooled from the encoder)

SID heads on the same backbone (the token-level estimators SimGR argues against; for
experiments/simgr_diagnostics.py), trained jointly with weights simgr.sid_weight and
simgr.parallel_weight (0 = not trained: the paper's SimGR):
  autoregressive  the backbone's own next-token head, trained with the generative rows' NLL
                  (−Σ_t log P(c_v^t | h, c_v^<t)); decoded by trie beam search, or enumerated
  parallel        P_p(class | u) = softmax(u W_p + b_p) for every SID position p at once, over
                  the local SID tokens plus a 'none' class past the end of a shorter SID;
                  L_par = −Σ_p log P_p(class_v^p | u); an item's score is Σ_p log P_p over the
                  catalogue's SIDs only (decode/sid_distribution.py)
"Trained after" is the same method started from a finished SimGR run with only the heads'
terms: --config.train.init_from=RUN --config.simgr.item_weight=0. On the decoder, u and the
AR head's NLL come from one causal pass over history + target SID (the cost of LC-Rec's own
per-prefix step, benchmarks/RESULTS.md); on T5 the encoder runs once for u and once under the
decoder (two dropout draws).

loss = item_weight · mean L_item + sid_weight · mean NLL + parallel_weight · mean L_par
       + α · mean L_AUO

Ghost's AUO as an item-level term (simgr.auo, α = simgr.alpha; beyond the paper). Ghost's
token form −Σ_d Σ_{t ≥ lcp(d,v)} log(1 − P(c_d^t | h, c_d^<t)) needs token probabilities,
which an item-level softmax does not have. Its item-level analogue, for a tail target v:
  L_AUO = −Σ_{d ∈ distractors(v)} log(1 − P(d | h))
with P(d|h) the item softmax and distractors(v) chosen exactly as Ghost chooses them
(ghost.undesired_collection: the K_b of the K_a head items most similar to v by item
embedding with the shortest common SID prefix). Ghost's rule that the target's own tokens are
never pushed down carries over: in d's pooled vector, the tokens d shares with v (their
longest common prefix, loss_terms.auo_token_mask) are held fixed (stop-gradient), so the term
moves u and d's own tokens, never v's. Needs the full softmax (the log-partition).

Scorers (decode.scorer; --mode=eval may switch them on a finished run):
  'similarity'  SimGR's exact top-K (the default)
  'exact'       the AR head's exact sequence log-probability of every item (teacher-forced,
                softmax over the full vocabulary), exact top-K; slow: every item per user
  'parallel'    the parallel head's product of per-position probabilities, exact top-K
  'beam'        the AR head's trie beam search (decode.beam_size >= max(eval.ks); cannot
                leave out past items, so eval.mask_history must be off)

Family: 'sequential' (history -> user state -> a score per item, exact top-k), with
needs=('sids',): the item vectors come from SID tokens, and the backbone reads the history
as SID tokens; the generative family's rules (beam >= max K, no mask_history) hold only for
decode.scorer='beam', and validate_config asks them there.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genrec_jax.config import ConfigError
from genrec_jax.decode.beam_search import beam_search
from genrec_jax.decode.item_topk import similarity_topk
from genrec_jax.decode.item_topk import topk_items
from genrec_jax.decode.sid_distribution import parallel_classes
from genrec_jax.decode.sid_distribution import parallel_log_probs
from genrec_jax.decode.sid_distribution import sequence_log_probs
from genrec_jax.losses import chunked_logsumexp
from genrec_jax.losses import item_softmax_cross_entropy
from genrec_jax.losses import sampled_softmax_cross_entropy
from genrec_jax.losses import target_log_probs
from genrec_jax.losses import unlikelihood
from genrec_jax.methods import BuildInputs
from genrec_jax.methods import Method
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import backbones
from genrec_jax.methods import ghost
from genrec_jax.methods import lcrec
from genrec_jax.methods import tiger
from genrec_jax.methods.loss_terms import auo_token_mask
from genrec_jax.methods.sid_tokens import item_tokens_of

SPEC = MethodSpec(family='sequential', needs=('sids',))
BACKBONES = {'lcrec': lcrec, 'tiger': tiger}
SCORERS = ('similarity', 'exact', 'parallel', 'beam')


def default_config(backbone: str = 'lcrec') -> ml_collections.ConfigDict:
  """SimGR's fields on the given backbone (config files pass simgr.backbone here)."""
  if backbone not in BACKBONES:
    raise ConfigError(f'Invalid config.simgr.backbone {backbone!r}: use one of '
                      f'{sorted(BACKBONES)}.')
  config = BACKBONES[backbone].default_config()
  config.update({
      'simgr': dict(
          backbone=backbone, pool='last' if backbone == 'lcrec' else 'mean',
          item_vectors='sid', similarity='cosine', temperature=0.1,
          softmax='full', chunk_size=2048, num_negatives=256, sampling='uniform',
          item_weight=1.0, sid_weight=1.0, parallel_weight=1.0,
          auo=False, alpha=0.1, k_a=200, k_b=5),
      'decode': dict(beam_size=20, scorer='similarity', chunk_size=0),
      'train': dict(example_kind='prefix'),
  })
  return config


def default_config_for(config) -> ml_collections.ConfigDict:
  return default_config(config.simgr.backbone)


def validate_config(config) -> None:
  s, d = config.simgr, config.decode
  choices = {'pool': ('last', 'mean'), 'item_vectors': ('sid', 'text'),
             'similarity': ('cosine', 'dot'), 'softmax': ('full', 'sampled'),
             'sampling': ('uniform', 'popularity')}
  for field, allowed in choices.items():
    if s[field] not in allowed:
      raise ConfigError(f'Invalid config.simgr.{field}={s[field]!r}: use one of {allowed}.')
  checks = [
      (s.temperature > 0, 'simgr.temperature', 'must be > 0, e.g. 0.1'),
      (s.chunk_size >= 1, 'simgr.chunk_size', 'must be >= 1 (items per softmax chunk)'),
      (s.num_negatives >= 1, 'simgr.num_negatives', 'must be >= 1'),
      (min(s.item_weight, s.sid_weight, s.parallel_weight, s.alpha) >= 0,
       'simgr.item_weight', 'the loss weights (item_weight, sid_weight, parallel_weight, '
       'alpha) must be >= 0'),
      (s.item_weight + s.sid_weight + s.parallel_weight > 0, 'simgr.item_weight',
       'at least one of item_weight, sid_weight, parallel_weight must be > 0'),
      (1 <= s.k_b <= s.k_a, 'simgr.k_b', 'must be in [1, simgr.k_a]'),
      (not s.auo or (s.softmax == 'full' and s.item_weight > 0), 'simgr.auo',
       "the item-level AUO needs the full softmax's log-partition: set simgr.softmax='full' "
       'and simgr.item_weight > 0'),
      (d.scorer in SCORERS, 'decode.scorer', f'use one of {SCORERS}'),
      (d.chunk_size >= 0, 'decode.chunk_size', 'must be >= 0 (0 = one chunk)'),
      (config.train.example_kind == 'prefix', 'train.example_kind',
       "SimGR trains one history -> target example per row; set it to 'prefix'"),
      (set(config.instructions.tasks) <= {'seqrec'} if 'instructions' in config else True,
       'instructions.tasks', "SimGR reads the history as the SID stream or LC-Rec's seqrec "
       "prompt: use () or ('seqrec',)"),
      (config.model.get('train_backbone', True) and config.model.get('train_old_vocab', True),
       'model.train_backbone', 'SimGR fine-tunes the whole backbone; set train_backbone and '
       'train_old_vocab to True'),
  ]
  if d.scorer == 'beam':
    top = max(int(k) for k in config.eval.ks)
    checks += [
        (d.beam_size >= top, 'decode.beam_size',
         f"must be >= max(eval.ks) = {top} with decode.scorer='beam'"),
        (not config.eval.mask_history, 'eval.mask_history',
         "decode.scorer='beam' cannot leave out past items exactly; set it to False (the "
         "other scorers can)")]
  for ok, field, fix in checks:
    if not ok:
      raise ConfigError(f'Invalid config.{field}: {fix}.')
  BACKBONES[s.backbone].validate_config(config)


# ------------------------------------------------------------------------ loss terms --


@dataclasses.dataclass
class ItemLevelOutputs:
  """What a SimGR step computed for one batch of [B] targets."""
  targets: jax.Array  # [B]
  states: jax.Array  # [B, D] user states u
  queries: jax.Array  # [B, D] s(u, ·) / τ side of the user: (normalised) u / τ
  table: jax.Array  # [I, D] item side: (normalised) v_i
  vectors_of: Any = None  # (items [B, K], free [B, K, L]) -> [B, K, D] item side
  negatives: Any = None  # [S] sampled negatives (sampled softmax)
  log_q: Any = None  # [I] their log sampling probabilities
  sid_nll: Any = None  # [B] AR head's NLL of the target SID
  position_log_probs: Any = None  # [B, P, C] parallel head


class ItemSoftmaxCE:
  """SimGR's −log P(target | h), full (chunked) or sampled softmax."""

  name = 'item_ce'

  def __init__(self, weight: float, chunk_size: int, sampled: bool):
    self.weight, self.chunk_size, self.sampled = weight, chunk_size, sampled

  def __call__(self, out: ItemLevelOutputs):
    if self.sampled:
      values = sampled_softmax_cross_entropy(out.queries, out.table, out.targets,
                                             out.negatives, out.log_q)
    else:
      values = item_softmax_cross_entropy(out.queries, out.table, out.targets,
                                          self.chunk_size)
    return values, {'item_ce': values}


class SIDNLL:
  """The AR SID head's −Σ_t log P(c_v^t | h, c_v^<t) (the generative rows' NLL)."""

  name = 'sid_nll'

  def __init__(self, weight: float):
    self.weight = weight

  def __call__(self, out: ItemLevelOutputs):
    return out.sid_nll, {'sid_nll': out.sid_nll}


class ParallelNLL:
  """The parallel head's −Σ_p log P_p(class_v^p | u)."""

  name = 'parallel_nll'

  def __init__(self, weight: float, classes: np.ndarray):
    self.weight = weight
    self.classes = jnp.asarray(classes)  # [I, P]

  def __call__(self, out: ItemLevelOutputs):
    picked = jnp.take_along_axis(out.position_log_probs, self.classes[out.targets][..., None],
                                 axis=-1)[..., 0]  # [B, P]
    values = -picked.sum(-1)
    return values, {'parallel_nll': values}


class ItemAUO:
  """Item-level AUO (see the module doc): for a tail target v,
  −Σ_{d ∈ distractors(v)} log(1 − P(d | h)), d's tokens shared with v held fixed."""

  name = 'auo'

  def __init__(self, weight: float, distractors: np.ndarray, free: np.ndarray,
               is_tail: np.ndarray, chunk_size: int):
    self.weight, self.chunk_size = weight, chunk_size
    self.distractors = jnp.asarray(distractors)  # [I, Kb], -1 none
    self.free = jnp.asarray(free)  # [I, Kb, L] tokens of d that may move
    self.is_tail = jnp.asarray(is_tail)

  def __call__(self, out: ItemLevelOutputs):
    d = self.distractors[out.targets]  # [B, Kb]
    vectors = out.vectors_of(jnp.maximum(d, 0), self.free[out.targets])  # [B, Kb, D]
    lse = chunked_logsumexp(out.queries, out.table, self.chunk_size)  # [B]
    log_p = jnp.einsum('BD,BKD->BK', out.queries, vectors) - lse[:, None]
    active = self.is_tail[out.targets][:, None] & (d >= 0)
    values = unlikelihood(log_p, active).sum(-1)
    return values, {'auo': values}


# -------------------------------------------------------------------------- the method --


def _unit(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


class SimGR(Method):
  """A SimGR recommender on a generative backbone (`generator`: the GenerativeRecommender
  LC-Rec's or TIGER's module builds; its backbone, SID tokens and prompt are shared, and it
  is the AR SID head)."""

  def __init__(self, generator, *, eos_token: int | None, num_sid_tokens: int, terms,
               pool: str = 'last', similarity: str = 'cosine', temperature: float = 0.1,
               scorer: str = 'similarity', beam_size: int = 20, chunk_size: int = 0,
               text_embeddings: np.ndarray | None = None, sampling_log_q=None,
               num_negatives: int = 0):
    self.generator = generator
    self.backbone = generator.backbone
    self.num_items = generator.num_items
    self.max_history = generator.max_history
    self.pool, self.similarity, self.temperature = pool, similarity, temperature
    self.scorer, self.beam_size, self.chunk_size = scorer, beam_size, chunk_size
    self.terms = tuple(terms)
    self.sampled = any(getattr(t, 'sampled', False) for t in self.terms)
    self.num_negatives = num_negatives
    self.log_q = None if sampling_log_q is None else jnp.asarray(sampling_log_q, jnp.float32)
    tokens = generator.item_tokens_host  # [I, L] global
    # Pooling weights: the code tokens of each SID (EOS and padding weigh 0).
    codes = (tokens >= 0) if eos_token is None else (tokens >= 0) & (
        tokens != eos_token + generator.token_base)
    self.item_tokens = jnp.asarray(tokens)
    self.code_mask = jnp.asarray(codes)
    local = np.where(tokens >= 0, tokens - generator.token_base, -1)
    self.num_classes = num_sid_tokens + 1  # + 'none' past the end of a shorter SID
    self.classes = jnp.asarray(parallel_classes(local, num_sid_tokens))  # [I, P]
    self.text = None if text_embeddings is None else jnp.asarray(text_embeddings, jnp.float32)

  # ------------------------------------------------------------------------- params --

  def init(self, rng):
    rng_backbone, rng_head, rng_text = jax.random.split(rng, 3)
    params = {'backbone': self.generator.init(rng_backbone)}
    dim = self.backbone.token_embeddings(params['backbone']).shape[1]
    positions = self.classes.shape[1]
    params['parallel_head'] = {
        'kernel': jax.random.normal(rng_head, (positions, dim, self.num_classes),
                                    jnp.float32) / np.sqrt(dim),
        'bias': jnp.zeros((positions, self.num_classes), jnp.float32)}
    if self.text is not None:
      width = self.text.shape[1]
      params['text_adapter'] = jax.random.normal(rng_text, (width, dim),
                                                 jnp.float32) / np.sqrt(width)
    return params

  # ----------------------------------------------------------- users, items, scores --

  def user_states(self, params, history, rng=None):
    """[B, D] u from the backbone's states of the history's prompt tokens."""
    tokens = self.generator.prompt_tokens(history)
    return self._pool(self.backbone.history_states(params['backbone'], tokens, rng), tokens)

  def _pool(self, states, tokens):
    """states [B, T, D] of the prompt tokens [B, T] (left-padded) -> u [B, D]."""
    if self.pool == 'last':  # left-padded: the last position is the last history token
      return states[:, -1].astype(jnp.float32)
    valid = (tokens >= 0)[..., None]
    return (jnp.where(valid, states, 0.0).sum(1) / jnp.maximum(valid.sum(1), 1)).astype(
        jnp.float32)

  def _states_and_sid_nll(self, params, batch, rng):
    """(u [B, D], the AR head's NLL of the target SID [B]). A decoder-only backbone reads
    history + target SID in one causal pass (the history is left-padded, so the SID follows
    its last token): u is the state at the last history token, whose logits are the SID's
    first token's; this equals the generative rows' continuation_logits at half the cost."""
    if not isinstance(self.backbone, backbones.DecoderBackbone):
      return (self.user_states(params, batch['history'], rng),
              self.generator.target_outputs(params['backbone'], batch, rng).nll)
    prompt = self.generator.prompt_tokens(batch['history'])
    labels = item_tokens_of(self.item_tokens, batch['target'])  # [B, L]
    tokens = jnp.concatenate([prompt, labels[:, :-1]], axis=1)
    states = self.backbone.history_states(params['backbone'], tokens, rng)
    length = prompt.shape[1]
    logits = self.backbone.state_logits(params['backbone'], states[:, length - 1:])  # [B,L,V]
    return (self._pool(states[:, :length], prompt),
            -target_log_probs(logits, labels).sum(-1))

  def _pooled(self, params, tokens, weights, free=None):
    """[..., D] mean of the token embeddings of tokens [..., L] where weights; tokens
    outside `free` [..., L] (if given) are held fixed (stop-gradient)."""
    embeddings = self.backbone.token_embeddings(params['backbone'])
    rows = embeddings[jnp.maximum(tokens, 0)].astype(jnp.float32)  # [..., L, D]
    if free is not None:
      rows = jnp.where(free[..., None], rows, jax.lax.stop_gradient(rows))
    weights = weights.astype(jnp.float32)
    return (rows * weights[..., None]).sum(-2) / jnp.maximum(weights.sum(-1, keepdims=True),
                                                             1.0)

  def raw_item_vectors(self, params, items=None, free=None):
    """[I, D] v_i (or [..., D] of items [...])."""
    if self.text is not None:
      text = self.text if items is None else self.text[items]
      return text @ params['text_adapter']
    if items is None:
      return self._pooled(params, self.item_tokens, self.code_mask)
    return self._pooled(params, self.item_tokens[items], self.code_mask[items], free)

  def item_vectors(self, params):
    """The item side of s(u, ·) (unit length under cosine similarity)."""
    table = self.raw_item_vectors(params)
    return _unit(table) if self.similarity == 'cosine' else table

  def queries(self, states):
    return (_unit(states) if self.similarity == 'cosine' else states) / self.temperature

  def similarity_scores(self, params, batch):
    """[B, I] s(u, v_i) / τ (the logits of SimGR's item distribution)."""
    return self.queries(self.user_states(params, batch['history'])) @ self.item_vectors(
        params).T

  # ------------------------------------------------------------------------ training --

  def loss_fn(self, params, batch, rng):
    rng_drop, rng_neg = (None, jax.random.PRNGKey(0)) if rng is None else jax.random.split(rng)
    names = {t.name for t in self.terms}
    sid_nll = None
    if 'sid_nll' in names:
      states, sid_nll = self._states_and_sid_nll(params, batch, rng_drop)
    else:
      states = self.user_states(params, batch['history'], rng_drop)
    out = ItemLevelOutputs(targets=batch['target'], states=states,
                           queries=self.queries(states), table=self.item_vectors(params),
                           sid_nll=sid_nll)
    out.vectors_of = lambda items, free: self._item_side(self.raw_item_vectors(params, items,
                                                                               free))
    if self.sampled:
      out.log_q = self.log_q
      out.negatives = jax.random.categorical(rng_neg, self.log_q, shape=(self.num_negatives,))
    if 'parallel_nll' in names:
      out.position_log_probs = self.position_log_probs(params, states)
    loss, metrics = None, {}
    for term in self.terms:
      values, term_metrics = term(out)
      part = term.weight * jnp.mean(values)
      loss = part if loss is None else loss + part
      metrics.update({name: jnp.mean(value) for name, value in term_metrics.items()})
    return loss, metrics

  def _item_side(self, vectors):
    return _unit(vectors) if self.similarity == 'cosine' else vectors

  # ------------------------------------------------------------------------- SID heads --

  def position_log_probs(self, params, states):
    """[B, P, C] the parallel head's log-softmax at every SID position."""
    head = params['parallel_head']
    logits = jnp.einsum('BD,PDC->BPC', states, head['kernel']) + head['bias'][None]
    return jax.nn.log_softmax(logits, axis=-1)

  @functools.partial(jax.jit, static_argnums=(0,))
  def parallel_scores(self, params, history):
    """[B, I] Σ_p log P_p(class_v^p | u) of every catalogue item."""
    return parallel_log_probs(self.position_log_probs(params, self.user_states(params, history)),
                              self.classes)

  @functools.partial(jax.jit, static_argnums=(0, 3, 4))
  def ar_scores(self, params, history, items_per_chunk: int = 64, normalize: str = 'vocab',
                trie_nodes=None):
    """[B, I] the AR head's exact log P(v | h) of every item (teacher-forced, the items in
    chunks), normalised over the full vocabulary (the beam search's scores) or the trie."""
    hist = self.generator.prompt_tokens(history)
    num = self.num_items
    count = -(-num // items_per_chunk)
    items = jnp.minimum(jnp.arange(count * items_per_chunk), num - 1).reshape(count, -1)

    def chunk_scores(chunk):
      tokens = self.item_tokens[chunk]  # [C, L]
      inputs = jnp.broadcast_to(tokens[None, :, :-1], (hist.shape[0], *tokens[:, :-1].shape))
      logits = self.backbone.continuation_logits(params['backbone'], hist, inputs, None)
      nodes = None if trie_nodes is None else trie_nodes[chunk]
      return sequence_log_probs(logits, tokens, normalize, self.generator.trie, nodes)

    scores = jax.lax.map(chunk_scores, items)  # [N, B, C]
    return jnp.moveaxis(scores, 0, 1).reshape(hist.shape[0], -1)[:, :num]

  @functools.partial(jax.jit, static_argnums=(0, 3, 4))
  def beam_topk(self, params, batch, k, beam_size):
    """Top k <= beam_size items of the AR head's trie beam search (sequence log-probs)."""
    hist = self.generator.prompt_tokens(batch['history'])
    first_logits, cache, shared = self.backbone.prefill(params['backbone'], hist,
                                                        self.generator.trie.max_len)
    step = lambda tokens, cache, _: self.backbone.decode_step(params['backbone'], tokens,
                                                              cache, shared)
    items, scores = beam_search(step, cache, self.generator.trie, batch_size=hist.shape[0],
                                beam_size=beam_size, first_logits=first_logits)
    return items[:, :k], scores[:, :k]

  # ------------------------------------------------------------------------- scoring --

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    exclude = batch.get('exclude')
    if self.scorer == 'beam':
      if exclude is not None:
        raise ValueError("decode.scorer='beam' cannot mask past items exactly; set "
                         'eval.mask_history=False.')
      return self.beam_topk(params, batch, k, self.beam_size)
    if self.scorer == 'similarity':
      queries = self.queries(self.user_states(params, batch['history']))
      return similarity_topk(queries, self.item_vectors(params), k, exclude,
                             self.chunk_size or None)
    return topk_items(self._catalogue_scores(params, batch['history']), k, exclude)

  def _catalogue_scores(self, params, history):
    if self.scorer == 'parallel':
      return self.parallel_scores(params, history)
    if self.scorer == 'exact':
      return self.ar_scores(params, history, max(1, 2048 // history.shape[0]))
    return self.similarity_scores(params, {'history': history})

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    if self.scorer in ('exact', 'beam'):  # sequence log-probabilities, as generative rows
      return self.generator.score_items(params['backbone'], batch, items)
    return jnp.take_along_axis(self._catalogue_scores(params, batch['history']), items, axis=1)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  s = config.simgr
  generator = BACKBONES[s.backbone].build(config, dataset, inputs)
  sids = inputs.sids
  terms = []
  if s.item_weight > 0:
    terms.append(ItemSoftmaxCE(s.item_weight, s.chunk_size, s.softmax == 'sampled'))
  if s.sid_weight > 0:
    terms.append(SIDNLL(s.sid_weight))
  if s.parallel_weight > 0:
    terms.append(ParallelNLL(s.parallel_weight,
                             parallel_classes(sids.item_tokens(), sids.vocab_size)))
  if s.auo and s.alpha > 0:
    if inputs.embeddings is None:
      raise ValueError('simgr: AUO chooses its distractors by the item embeddings '
                       '(config.embed).')
    local = sids.item_tokens()
    distractors = ghost.undesired_collection(inputs.embeddings, local, dataset.is_head,
                                             s.k_a, s.k_b)
    free = auo_token_mask(local, distractors)  # [I, Kb, L]: d's tokens past lcp(d, v)
    terms.append(ItemAUO(s.alpha, distractors, free, ~dataset.is_head, s.chunk_size))
  log_q = None
  if s.softmax == 'sampled':
    weights = (np.ones(dataset.num_items) if s.sampling == 'uniform'
               else dataset.item_counts.astype(np.float64) + 1.0)
    log_q = np.log(weights / weights.sum())
  text = None
  if s.item_vectors == 'text':
    if inputs.embeddings is None:
      raise ValueError("simgr.item_vectors='text' needs the embed stage's item vectors.")
    text = inputs.embeddings
  return SimGR(
      generator, eos_token=sids.eos_token if sids.ends_with_eos.any() else None,
      num_sid_tokens=sids.vocab_size, terms=terms, pool=s.pool, similarity=s.similarity,
      temperature=s.temperature, scorer=config.decode.scorer,
      beam_size=config.decode.beam_size, chunk_size=config.decode.chunk_size,
      text_embeddings=text, sampling_log_q=log_q, num_negatives=s.num_negatives)
