"""The generative-recommendation stage shared by LC-Rec, TIGER, LETTER, Ghost and the
debiasing baselines: a backbone reads the history as SID tokens and generates the next item's
SID; decoding is the trie-constrained beam search, so only real items come out.

Training objective per example with target item v and history h (SID tokens c_v):
  NLL_b = −Σ_i log P(c_v^(i) | h, c_v^(<i))            (summed over the SID's tokens)
  AUO_b = −Σ_{d ∈ distractors(v)} Σ_{i ≥ lcp(d, v)} log(1 − P(c_d^(i) | h, c_d^(<i)))
          (Ghost; tail v only; the tokens of d inside its longest common prefix with v are
          v's own tokens, so they are left out: only from the first differing token on)
  loss  = (Σ_b w_b · NLL_b + α · Σ_b AUO_b) / number of targets in the batch
w_b are per-target weights (1, or IFairLRS-RW's group weights). Probabilities are softmax
over the full vocabulary. Distractor SIDs are teacher-forced along their own prefixes from
the same history, using one prefill of the history and a batched continuation (no
re-encoding per distractor).

Whole-sequence training ('sequence' examples, decoder backbone only): one causal pass over a
chunk of a user's SID stream (H context items + up to C targets, see
`pipeline.sequence_chunks`) trains every target item in it, and equals the per-prefix
objective of the same targets with the chunk's preceding items as history (RoPE depends only
on relative positions). So in this mode a target sees between H and H + C − 1 history items
rather than exactly H: a window mask cannot cap it at H in one pass, because in a deeper
layer the states of the window's first items already carry the items before the window.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.decode.beam_search import beam_search
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.tokenize.trie import build_trie


def compact(tokens: jax.Array, left: bool) -> jax.Array:
  """Moves the -1 entries of each row to the left (or right), keeping the order of the rest."""
  valid = tokens >= 0
  order = jnp.argsort(valid if left else ~valid, axis=1, stable=True)
  return jnp.take_along_axis(tokens, order, axis=1)


def item_tokens_of(item_tokens: jax.Array, items: jax.Array) -> jax.Array:
  """[..., L] global SID tokens of items [...] (-1 items and pad slots give -1)."""
  tokens = item_tokens[jnp.maximum(items, 0)]
  return jnp.where(items[..., None] >= 0, tokens, -1)


def history_tokens(item_tokens: jax.Array, history: jax.Array) -> jax.Array:
  """History items [B, H] -> their SID tokens concatenated, left-padded [B, H·L]."""
  tokens = item_tokens_of(item_tokens, history)
  return compact(tokens.reshape(history.shape[0], -1), left=True)


def stream(item_tokens: jax.Array, items: jax.Array, *per_item: jax.Array):
  """A chunk of items [B, W] -> (tokens [B, W·L] right-padded, then each per-item array
  [B, W] spread over its item's tokens), for whole-sequence training."""
  batch = items.shape[0]
  tokens = item_tokens_of(item_tokens, items)  # [B, W, L]
  spread = [jnp.broadcast_to(x[..., None], tokens.shape).reshape(batch, -1) for x in per_item]
  tokens = tokens.reshape(batch, -1)
  order = jnp.argsort(tokens < 0, axis=1, stable=True)  # padding to the right
  return tuple(jnp.take_along_axis(x, order, axis=1) for x in (tokens, *spread))


def sequence_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log P(tokens) under logits [..., V] (full-vocabulary softmax); tokens -1 give 0."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(tokens, 0)[..., None], axis=-1)[..., 0]
  return jnp.where(tokens >= 0, picked, 0.0)


def unlikelihood(log_probs: jax.Array, valid: jax.Array) -> jax.Array:
  """−Σ log(1 − p) over valid entries of log_probs [..., L] (last axes summed by caller)."""
  p = jnp.minimum(jnp.exp(log_probs), 1.0 - 1e-6)
  return jnp.where(valid, -jnp.log1p(-p), 0.0)


def auo_token_mask(item_tokens: np.ndarray, distractors: np.ndarray) -> np.ndarray:
  """[I, Kb, L] bool: the tokens of each item's distractors that AUO penalises.

  item_tokens [I, L] (-1 padded), distractors [I, Kb] item indices (-1: none). Token i of
  distractor d of target v is masked out when d[:i+1] == v[:i+1] (it lies in their longest
  common prefix: pushing it down would push down v's own token); from the first differing
  token on, every real token counts. Padding and missing distractors never count.
  """
  target = item_tokens[:, None, :]  # [I, 1, L]
  tokens = np.where((distractors >= 0)[..., None], item_tokens[distractors], -1)  # [I, Kb, L]
  shared = np.cumprod((tokens == target) & (tokens >= 0), axis=-1).astype(bool)
  return (tokens >= 0) & ~shared


class GenerativeRecommender:
  """A SID generator on a backbone (see `backbones.py`), trained and decoded the same way for
  every method built on it. Methods add per-example weights and distractors via hooks."""

  trainable = True

  def __init__(self, backbone, sids: SIDTable, num_items: int, *, max_history: int,
               beam_size: int, token_base: int, auo_weight: float = 0.0,
               distractors: np.ndarray | None = None, is_tail: np.ndarray | None = None,
               example_weight=None):
    self.backbone = backbone
    self.sids = sids
    self.num_items = num_items
    self.max_history = max_history
    self.beam_size = beam_size
    self.token_base = token_base
    tokens = sids.item_tokens()
    self.item_tokens_host = np.where(tokens >= 0, tokens + token_base, -1).astype(np.int32)
    self.item_tokens = jnp.asarray(self.item_tokens_host)  # [I, L]
    self.trie = jax.device_put(build_trie(self.item_tokens_host))
    self.auo_weight = auo_weight
    self.distractors = None if distractors is None else jnp.asarray(distractors)  # [I, Kb]
    # [I, Kb, L] which distractor tokens get the unlikelihood (see `auo_token_mask`).
    self.auo_mask = (None if distractors is None else
                     jnp.asarray(auo_token_mask(self.item_tokens_host, np.asarray(distractors))))
    self.is_tail = None if is_tail is None else jnp.asarray(is_tail)
    self.example_weight = example_weight  # callable(target items) -> weights, or None
    self.instructions = None  # set to an instructions.Instructions for LC-Rec's prompts

  def prompt_tokens(self, history):
    """History items [B, H] -> the backbone's input tokens: the SID stream, or with
    instructions LC-Rec's seqrec prompt around it."""
    if self.instructions is None:
      return history_tokens(self.item_tokens, history)
    return self.instructions.seqrec_prompt(history)

  def init(self, rng):
    return self.backbone.init(rng)

  # ------------------------------------------------------------------------ training --

  def loss_fn(self, params, batch, rng):
    if 'items' in batch:
      return self._sequence_loss(params, batch, rng)
    return self._prefix_loss(params, batch, rng)

  def per_example_terms(self, params, batch, rng):
    """(NLL_b [B], AUO_b [B] or None) for per-prefix examples."""
    hist = self.prompt_tokens(batch['history'])
    target = item_tokens_of(self.item_tokens, batch['target'])  # [B, L]
    continuations = target[:, None]  # [B, R, L]
    use_auo = self.auo_weight > 0 and self.distractors is not None
    if use_auo:
      distractor_tokens = item_tokens_of(self.item_tokens,
                                         self.distractors[batch['target']])  # [B, Kb, L]
      continuations = jnp.concatenate([continuations, distractor_tokens], axis=1)
    # logits[:, r, i] is the distribution of token i of continuation r.
    logits = self.backbone.continuation_logits(params, hist, continuations, rng)
    log_probs = sequence_log_probs(logits, continuations)  # [B, R, L]
    nll = -log_probs[:, 0].sum(-1)
    if not use_auo:
      return nll, None
    auo = unlikelihood(log_probs[:, 1:], self.auo_mask[batch['target']]).sum((1, 2))
    return nll, jnp.where(self.is_tail[batch['target']], auo, 0.0)

  def _prefix_loss(self, params, batch, rng):
    nll, auo = self.per_example_terms(params, batch, rng)
    weights = (jnp.ones_like(nll) if self.example_weight is None
               else self.example_weight(batch['target']))
    loss, metrics = self._combine(jnp.sum(weights * nll), jnp.sum(nll),
                                  None if auo is None else jnp.sum(auo), nll.shape[0])
    if self.instructions is None or len(self.instructions.tasks) == 1:
      return loss, metrics
    # The other instruction tasks: their mean NLL, weighted by their share of the examples.
    rng_items = jax.random.fold_in(rng, 1) if rng is not None else jax.random.PRNGKey(0)
    total, count = loss * nll.shape[0], nll.shape[0]
    for task, prompts, responses in self.instructions.auxiliary_examples(batch, rng_items):
      logits = self.backbone.continuation_logits(params, prompts, responses[:, None], rng)
      task_nll = -sequence_log_probs(logits, responses[:, None]).sum((1, 2))
      total, count = total + task_nll.sum(), count + task_nll.shape[0]
      metrics[f'nll/{task}'] = task_nll.mean()
    return total / count, metrics

  def _combine(self, weighted_nll, nll, auo, num_targets):
    """loss = (Σ w·NLL + α Σ AUO) / number of targets, and the logged metrics."""
    num_targets = jnp.maximum(num_targets, 1)
    loss = weighted_nll / num_targets
    metrics = {'nll': nll / num_targets}
    if auo is not None:
      loss = loss + self.auo_weight * auo / num_targets
      metrics['auo'] = auo / num_targets
    return loss, metrics

  def sequence_terms(self, params, batch, rng):
    """Per target item of a chunk: (NLL [B, W], AUO [B, W] or None), zero elsewhere.

    With AUO, each tail target's distractor SIDs branch off the chunk's SID stream at the
    target's first token: a distractor reads the stream before its target item and its own
    earlier tokens, at the positions the target's tokens take (RoPE), so every distractor is
    teacher-forced from exactly the target's history, with the stream's keys computed once.
    """
    items, is_target = batch['items'], batch['is_target']
    batch_size, width = items.shape
    item_tokens = item_tokens_of(self.item_tokens, items)  # [B, W, L]
    length = item_tokens.shape[-1]
    counts = (item_tokens >= 0).sum(-1)  # [B, W]
    starts = jnp.cumsum(counts, axis=1) - counts  # stream position of each item's first token
    item_index = jnp.broadcast_to(jnp.arange(width)[None, :], items.shape)
    tokens, token_item, token_target = stream(self.item_tokens, items, item_index, is_target)
    use_auo = self.auo_weight > 0 and self.distractors is not None
    if use_auo:
      active = is_target & (items >= 0) & self.is_tail[jnp.maximum(items, 0)]  # [B, W]
      # Distractors only for the tail-target slots: at most C = width - H targets per chunk.
      num_slots = max(width - self.max_history, 1)
      slots = jnp.argsort(~active, axis=1, stable=True)[:, :num_slots]  # [B, S]
      slot_active = jnp.take_along_axis(active, slots, axis=1)
      slot_items = jnp.maximum(jnp.take_along_axis(items, slots, axis=1), 0)
      slot_starts = jnp.take_along_axis(starts, slots, axis=1)
      distractors = item_tokens_of(self.item_tokens, self.distractors[slot_items])  # [B,S,K,L]
      distractors = jnp.where(slot_active[..., None, None], distractors, -1)
      num_k = distractors.shape[2]
      stream_logits, branch_logits = self.backbone.branch_logits(
          params, tokens, tokens >= 0,
          distractors[..., :-1].reshape(batch_size, num_slots * num_k, length - 1),  # inputs
          jnp.repeat(slot_starts, num_k, axis=1))
    else:
      stream_logits = self.backbone.sequence_logits(params, tokens, tokens >= 0, rng)
    labels = jnp.where(token_target[:, 1:], tokens[:, 1:], -1)  # token q+1 from query q
    token_nll = -sequence_log_probs(stream_logits[:, :-1], labels)  # [B, T-1]
    owner = jnp.where(labels >= 0, token_item[:, 1:], width)  # item of each loss token
    nll = jax.vmap(lambda v, o: jnp.zeros(width + 1).at[o].add(v))(token_nll, owner)[:, :-1]
    if not use_auo:
      return nll, None
    # Token 0 of every distractor: the distribution at the token before its target's start.
    before = jnp.take_along_axis(stream_logits, jnp.maximum(slot_starts - 1, 0)[..., None],
                                 axis=1)  # [B, S, V]
    first = sequence_log_probs(before[:, :, None, :], distractors[..., 0])  # [B, S, K]
    rest_logits = branch_logits.reshape(batch_size, num_slots, num_k, length - 1, -1)
    rest = sequence_log_probs(rest_logits, distractors[..., 1:])  # [B, S, K, L-1]
    log_probs = jnp.concatenate([first[..., None], rest], axis=-1)
    penalised = self.auo_mask[slot_items] & (distractors >= 0)  # [B, S, K, L]
    slot_auo = jnp.where(slot_active, unlikelihood(log_probs, penalised).sum((2, 3)), 0.)
    auo = jax.vmap(lambda v, i: jnp.zeros(width).at[i].add(v))(slot_auo, slots)
    return nll, auo

  def _sequence_loss(self, params, batch, rng):
    nll, auo = self.sequence_terms(params, batch, rng)
    targets = batch['is_target'] & (batch['items'] >= 0)
    weights = (jnp.ones_like(nll) if self.example_weight is None
               else self.example_weight(jnp.maximum(batch['items'], 0)))
    return self._combine(jnp.sum(jnp.where(targets, weights * nll, 0.0)), jnp.sum(nll),
                         None if auo is None else jnp.sum(auo), jnp.sum(targets))

  # ------------------------------------------------------------------------ decoding --

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    if 'exclude' in batch:
      raise ValueError('Generative methods decode with a trie beam search and cannot mask '
                       'past items exactly; set eval.mask_history=False.')
    hist = self.prompt_tokens(batch['history'])
    beam = max(k, self.beam_size)
    first_logits, cache, shared = self.backbone.prefill(params, hist, self.trie.max_len)
    step = lambda tokens, cache, _: self.backbone.decode_step(params, tokens, cache, shared)
    items, scores = beam_search(step, cache, self.trie, batch_size=hist.shape[0],
                                beam_size=beam, first_logits=first_logits)
    return items[:, :k], scores[:, :k]

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    """Sequence log-probability of each candidate item (sampled-negatives protocol)."""
    hist = self.prompt_tokens(batch['history'])
    candidates = item_tokens_of(self.item_tokens, items)  # [B, C, L]
    logits = self.backbone.continuation_logits(params, hist, candidates, None)
    return sequence_log_probs(logits, candidates).sum(-1)
