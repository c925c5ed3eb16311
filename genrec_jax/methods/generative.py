"""The generative family: LC-Rec, TIGER, LETTER, Ghost and the debiasing baselines, each
composed of three parts:
  backbone    history tokens -> logits (backbones.py; decoder inputs given apart from labels)
  loss terms  named pure functions of the per-target outputs, weighted (loss_terms.py)
  scorer      items for a user: the trie-constrained beam search (TrieBeamSearch here), or
              a wrapper of it (IFairLRS-RR's re-ranking), so only real items come out.

Training objective per example with target item v and history h (SID tokens c_v):
  NLL_b = −Σ_i log P(c_v^(i) | h, c_v^(<i))            (summed over the SID's tokens)
  AUO_b = −Σ_{d ∈ distractors(v)} Σ_{i ≥ lcp(d, v)} log(1 − P(c_d^(i) | h, c_d^(<i)))
          (Ghost; tail v only; the tokens of d inside its longest common prefix with v are
          v's own tokens, so they are left out: only from the first differing token on)
  loss  = (Σ_b w_b · NLL_b + α · Σ_b AUO_b) / number of targets in the batch
       = Σ_terms weight · Σ_targets values / number of targets   (the terms NLL and AUO)
w_b are per-target weights (1, or IFairLRS-RW's group weights). Probabilities are softmax
over the full vocabulary. A term's branches (AUO's distractor SIDs) are teacher-forced along
their own prefixes from the same history, using one prefill of the history and a batched
continuation (no re-encoding per branch).

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
from genrec_jax.losses import target_log_probs
from genrec_jax.methods import Method
from genrec_jax.methods.loss_terms import NLL
from genrec_jax.methods.loss_terms import TargetOutputs
from genrec_jax.methods.sid_tokens import global_item_tokens
from genrec_jax.methods.sid_tokens import history_tokens
from genrec_jax.methods.sid_tokens import item_tokens_of
from genrec_jax.methods.sid_tokens import stream
from genrec_jax.tokenize.sid_table import SIDTable
from genrec_jax.tokenize.trie import build_trie


class TrieBeamSearch:
  """The scorer of every generative row: beam search over the item trie (decode.beam_size
  beams; the top k <= beam_size are returned).

  A scorer has topk(method, params, batch, k) -> (items [B, k], scores [B, k]) and
  tune_on_validation(method, params, dataset, eval_config) -> (valid metrics of its choice or
  None, a record for results.json): a choice made after training (IFairLRS-RR's λ)."""

  def topk(self, method, params, batch, k):
    return method.beam_topk(params, batch, k)

  def tune_on_validation(self, method, params, dataset, eval_config):
    del method, params, dataset, eval_config
    return None, {}


class GenerativeRecommender(Method):
  """A SID generator: a backbone (see `backbones.py`) trained with named loss terms and
  decoded by a scorer, the same way for every method built on it.

  terms: loss terms (loss_terms.py), the first usually NLL; at most one sets branch_items.
  instructions: an instructions.Instructions for LC-Rec's prompts (None: the SID stream).
  train_dataset / restrict_optimizer: the Method hooks (augmentation; partial fine-tuning).
  """

  def __init__(self, backbone, sids: SIDTable, num_items: int, *, max_history: int,
               beam_size: int, token_base: int, terms=(NLL(),), scorer=None,
               instructions=None, train_dataset=None, restrict_optimizer=None):
    self.backbone = backbone
    self.sids = sids
    self.num_items = num_items
    self.max_history = max_history
    self.beam_size = beam_size
    self.token_base = token_base
    self.item_tokens_host = global_item_tokens(sids.item_tokens(), token_base)
    self.item_tokens = jnp.asarray(self.item_tokens_host)  # [I, L]
    self.trie = jax.device_put(build_trie(self.item_tokens_host))
    self.terms = tuple(terms)
    branching = [t for t in self.terms if t.branch_items is not None]
    if len(branching) > 1:
      raise ValueError(f'terms {[t.name for t in branching]}: at most one may branch.')
    self.branching = branching[0] if branching else None
    self.branch_items = (None if self.branching is None
                         else jnp.asarray(self.branching.branch_items))  # [I, K]
    self.scorer = scorer or TrieBeamSearch()
    self.instructions = instructions
    self.train_dataset = train_dataset
    self._restrict = restrict_optimizer

  def restrict_optimizer(self, tx):
    return tx if self._restrict is None else self._restrict(tx)

  def prompt_tokens(self, history):
    """History items [B, H] -> the backbone's input tokens: the SID stream, or with
    instructions LC-Rec's seqrec prompt around it."""
    if self.instructions is None:
      return history_tokens(self.item_tokens, history)
    return self.instructions.seqrec_prompt(history)

  def prompt(self, batch):
    """What the backbone reads of a batch's users: their prompt tokens (a method whose
    backbone reads more, e.g. GENPLUGIN's retrieved users, overrides this)."""
    return self.prompt_tokens(batch['history'])

  def init(self, rng):
    return self.backbone.init(rng)

  # ------------------------------------------------------------------------ training --

  def loss_fn(self, params, batch, rng):
    out = self.target_outputs(params, batch, rng)
    num_targets = (out.nll.shape[0] if out.nll.ndim == 1  # per prefix: every row counts
                   else jnp.sum(out.counted))
    loss, metrics = self.combine(out, num_targets)
    if 'items' in batch or self.instructions is None or len(self.instructions.tasks) == 1:
      return loss, metrics
    # The other instruction tasks: their mean NLL, weighted by their share of the examples.
    rng_items = jax.random.fold_in(rng, 1) if rng is not None else jax.random.PRNGKey(0)
    total, count = loss * out.nll.shape[0], out.nll.shape[0]
    for task, prompts, responses in self.instructions.auxiliary_examples(batch, rng_items):
      logits = self.backbone.continuation_logits(params, prompts, responses[:, None, :-1], rng)
      task_nll = -target_log_probs(logits, responses[:, None]).sum((1, 2))
      total, count = total + task_nll.sum(), count + task_nll.shape[0]
      metrics[f'nll/{task}'] = task_nll.mean()
    return total / count, metrics

  def combine(self, out: TargetOutputs, num_targets):
    """loss = Σ_terms weight · Σ_targets values / number of targets, and the metrics."""
    num_targets = jnp.maximum(num_targets, 1)
    loss, metrics = None, {}
    for term in self.terms:
      values, term_metrics = term(out)
      part = term.weight * jnp.sum(jnp.where(out.counted, values, 0.0)) / num_targets
      loss = part if loss is None else loss + part
      for name, value in term_metrics.items():
        metrics[name] = jnp.sum(jnp.where(out.counted, value, 0.0)) / num_targets
    return loss, metrics

  def per_target_metrics(self, params, batch, rng):
    """{metric name: per-target values} (e.g. 'nll', 'auo'), [B] or [B, W] (tests, tools)."""
    out = self.target_outputs(params, batch, rng)
    metrics = {}
    for term in self.terms:
      metrics.update(term(out)[1])
    return metrics

  def target_outputs(self, params, batch, rng) -> TargetOutputs:
    if 'items' in batch:
      return self._sequence_outputs(params, batch, rng)
    return self._prefix_outputs(params, batch, rng)

  def _prefix_outputs(self, params, batch, rng):
    labels = self.prefix_labels(batch['target'])
    # logits[:, r, i] is the distribution of token i of continuation r.
    logits = self.backbone.continuation_logits(params, self.prompt(batch), labels[..., :-1], rng)
    return self.prefix_target_outputs(batch['target'], labels, logits)

  def prefix_labels(self, targets):
    """[B, R, L] SID tokens teacher-forced per example: the target's, then its branches'."""
    labels = item_tokens_of(self.item_tokens, targets)[:, None]  # [B, 1, L]
    if self.branching is None:
      return labels
    branch_tokens = item_tokens_of(self.item_tokens, self.branch_items[targets])  # [B, K, L]
    return jnp.concatenate([labels, branch_tokens], axis=1)

  def prefix_target_outputs(self, targets, labels, logits) -> TargetOutputs:
    """TargetOutputs of per-prefix examples from the logits [B, R, L, V] of `labels`."""
    log_probs = target_log_probs(logits, labels)  # [B, R, L]
    out = TargetOutputs(items=targets, counted=jnp.ones(targets.shape, bool),
                        nll=-log_probs[:, 0].sum(-1))
    if self.branching is not None:
      out.branch_targets, out.branch_tokens = targets, labels[:, 1:]
      out.branch_active = self.branching.branch_active(targets)
      out.branch_log_probs, out.to_targets = log_probs[:, 1:], lambda rows: rows
    return out

  def _sequence_outputs(self, params, batch, rng):
    """Per target item of a chunk: NLL [B, W] (zero elsewhere), and the branches.

    Each active target's branch SIDs branch off the chunk's SID stream at the target's first
    token: a branch reads the stream before its target item and its own earlier tokens, at
    the positions the target's tokens take (RoPE), so every branch is teacher-forced from
    exactly the target's history, with the stream's keys computed once.
    """
    items, is_target = batch['items'], batch['is_target']
    batch_size, width = items.shape
    item_tokens = item_tokens_of(self.item_tokens, items)  # [B, W, L]
    length = item_tokens.shape[-1]
    counts = (item_tokens >= 0).sum(-1)  # [B, W]
    starts = jnp.cumsum(counts, axis=1) - counts  # stream position of each item's first token
    item_index = jnp.broadcast_to(jnp.arange(width)[None, :], items.shape)
    tokens, token_item, token_target = stream(self.item_tokens, items, item_index, is_target)
    if self.branching is not None:
      active = (is_target & (items >= 0)
                & self.branching.branch_active(jnp.maximum(items, 0)))  # [B, W]
      # Branches only for the active-target slots: at most C = width - H targets per chunk.
      num_slots = max(width - self.max_history, 1)
      slots = jnp.argsort(~active, axis=1, stable=True)[:, :num_slots]  # [B, S]
      slot_active = jnp.take_along_axis(active, slots, axis=1)
      slot_items = jnp.maximum(jnp.take_along_axis(items, slots, axis=1), 0)
      slot_starts = jnp.take_along_axis(starts, slots, axis=1)
      branches = item_tokens_of(self.item_tokens, self.branch_items[slot_items])  # [B,S,K,L]
      branches = jnp.where(slot_active[..., None, None], branches, -1)
      num_k = branches.shape[2]
      stream_logits, branch_logits = self.backbone.branch_logits(
          params, tokens, tokens >= 0,
          branches[..., :-1].reshape(batch_size, num_slots * num_k, length - 1),  # inputs
          jnp.repeat(slot_starts, num_k, axis=1))
    else:
      stream_logits = self.backbone.sequence_logits(params, tokens, tokens >= 0, rng)
    labels = jnp.where(token_target[:, 1:], tokens[:, 1:], -1)  # token q+1 from query q
    token_nll = -target_log_probs(stream_logits[:, :-1], labels)  # [B, T-1]
    owner = jnp.where(labels >= 0, token_item[:, 1:], width)  # item of each loss token
    nll = jax.vmap(lambda v, o: jnp.zeros(width + 1).at[o].add(v))(token_nll, owner)[:, :-1]
    out = TargetOutputs(items=items, counted=is_target & (items >= 0), nll=nll)
    if self.branching is None:
      return out
    # Token 0 of every branch: the distribution at the token before its target's start.
    before = jnp.take_along_axis(stream_logits, jnp.maximum(slot_starts - 1, 0)[..., None],
                                 axis=1)  # [B, S, V]
    first = target_log_probs(before[:, :, None, :], branches[..., 0])  # [B, S, K]
    rest_logits = branch_logits.reshape(batch_size, num_slots, num_k, length - 1, -1)
    rest = target_log_probs(rest_logits, branches[..., 1:])  # [B, S, K, L-1]
    out.branch_targets, out.branch_tokens, out.branch_active = slot_items, branches, slot_active
    out.branch_log_probs = jnp.concatenate([first[..., None], rest], axis=-1)
    out.to_targets = lambda rows: jax.vmap(lambda v, i: jnp.zeros(width).at[i].add(v))(rows,
                                                                                      slots)
    return out

  # ------------------------------------------------------------------------ decoding --

  def predict_topk(self, params, batch, k):
    return self.scorer.topk(self, params, batch, k)

  def tune_on_validation(self, params, dataset, eval_config):
    return self.scorer.tune_on_validation(self, params, dataset, eval_config)

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def beam_topk(self, params, batch, k):
    """Top k <= beam_size items of the trie beam search, by sequence log-probability."""
    if 'exclude' in batch:
      raise ValueError('Generative methods decode with a trie beam search and cannot mask '
                       'past items exactly; set eval.mask_history=False.')
    if k > self.beam_size:
      raise ValueError(f'top {k} asked of a beam of {self.beam_size}: set decode.beam_size '
                       f'>= max(eval.ks).')
    first_logits, cache, shared = self.backbone.prefill(params, self.prompt(batch),
                                                        self.trie.max_len)
    step = lambda tokens, cache, _: self.backbone.decode_step(params, tokens, cache, shared)
    items, scores = beam_search(step, cache, self.trie, batch_size=batch['history'].shape[0],
                                beam_size=self.beam_size, first_logits=first_logits)
    return items[:, :k], scores[:, :k]

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    """Sequence log-probability of each candidate item (sampled-negatives protocol)."""
    candidates = item_tokens_of(self.item_tokens, items)  # [B, C, L]
    logits = self.backbone.continuation_logits(params, self.prompt(batch), candidates[..., :-1],
                                               None)
    return target_log_probs(logits, candidates).sum(-1)
