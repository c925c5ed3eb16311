"""Unconstrained sampling from a decoder LM: greedy, temperature, top-k, top-p, repetition
penalty, max_new_tokens and EOS stop, in one jitted loop over pure arrays.

Two layers:
  * `sample_loop(step_fn, first_logits, state, ...)` knows nothing about the model. It calls
        step_fn(tokens [B] int32, state) -> (logits [B, V] float32, aux, state)
    once per generated token (tests drive it with fake logits). `aux` is any pytree of
    [B, ...] arrays (e.g. the token's hidden state); the loop stacks it per step.
  * `generate(model, params, prompt_tokens, prompt_mask, key, config)` runs a
    `models.transformer.Transformer` over its KV cache: the (left-)padded prompt batch is
    prefilled once, then every sampled token is fed back. With return_hidden it also returns
    each generated token's final-norm hidden state (the state after reading that token, as
    for a prompt token) and the mean hidden state over each prompt's real tokens.

Logits are processed in Hugging Face's order (`process_logits`): repetition penalty, then
temperature, top-k and top-p; removed tokens get -1e30 (finite). temperature=0 is greedy.
Rows that emit an EOS id stop: their later tokens are `pad_id` and their `lengths` count the
EOS. The loop ends when every row has stopped or after max_new_tokens.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from genrec_jax.models import transformer as transformer_lib

NEG = -1e30  # logit of a removed token: exp() of it is exactly 0, and no inf arithmetic

StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any, Any]]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to pick each token (hashable: a static argument of the jitted loop).

  temperature 0 = greedy (argmax after the repetition penalty); top_k 0 and top_p 1 = off.
  repetition_penalty p > 1 (HF's RepetitionPenaltyLogitsProcessor): the logit s of every token
  already in the prompt or generated so far becomes s / p if s > 0, else s * p (prompt padding
  is not counted).
  """
  max_new_tokens: int = 64
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  repetition_penalty: float = 1.0
  eos_ids: tuple[int, ...] = ()
  pad_id: int = 0

  def __post_init__(self):
    object.__setattr__(self, 'eos_ids', tuple(int(i) for i in self.eos_ids))
    checks = (('max_new_tokens', self.max_new_tokens >= 1, '>= 1'),
              ('temperature', self.temperature >= 0, '>= 0 (0 = greedy)'),
              ('top_k', self.top_k >= 0, '>= 0 (0 = off)'),
              ('top_p', 0 < self.top_p <= 1, 'in (0, 1] (1 = off)'),
              ('repetition_penalty', self.repetition_penalty > 0, '> 0 (1 = off)'))
    for name, ok, want in checks:
      if not ok:
        raise ValueError(f'SamplingConfig.{name} must be {want}, got {getattr(self, name)}.')

  @property
  def greedy(self) -> bool:
    return self.temperature == 0


class SampleOutput(NamedTuple):
  tokens: jax.Array  # [B, N] int32, pad_id after a row's EOS and beyond the steps run
  lengths: jax.Array  # [B] int32, tokens generated per row (its EOS included)
  aux: Any  # step_fn's aux stacked [B, N, ...]; zeros after a row stopped
  state: Any  # step_fn's state after the last step (e.g. the KV cache)


class Generation(NamedTuple):
  tokens: jax.Array  # [B, N] int32
  lengths: jax.Array  # [B] int32
  hidden: jax.Array | None  # [B, N, D] float32: hidden state of generated token n (n < length)
  prompt_hidden_mean: jax.Array | None  # [B, D]: mean over the prompt's real tokens


def repetition_penalty(logits: jax.Array, seen: jax.Array, penalty: float) -> jax.Array:
  """logits [B, V] with the tokens where seen [B, V] is set penalised (HF's formula)."""
  penalised = jnp.where(logits > 0, logits / penalty, logits * penalty)
  return jnp.where(seen, penalised, logits)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """Keeps the logits >= the k-th largest of each row (ties at the k-th kept, as HF)."""
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][:, -1:]  # [B, 1]
  return jnp.where(logits < kth, NEG, logits)


def top_p_filter(logits: jax.Array, p: float, iterations: int = 64) -> jax.Array:
  """Nucleus filtering with HF's TopPLogitsWarper's rule: a token stays iff the probability
  of the tokens strictly more likely than it is < p (so the kept set is the smallest set of
  most likely tokens holding mass >= p; the most likely token always stays).

  The cutoff logit is found by bisection instead of sorting the vocabulary (XLA:CPU sorts
  [64, 49152] logits in seconds; `iterations` masked sums cost a fraction of a model step):
  hi stays where the rule keeps, lo where it removes, until they are adjacent floats (at most
  `iterations` halvings; ~30 for logits of a trained LM), so hi is the smallest kept logit.
  Tokens tied at that logit all stay (HF keeps some of them, in the order its sort leaves
  them).
  """
  if p >= 1.0:
    return logits
  probs = jax.nn.softmax(logits, axis=-1)
  keeps = lambda v: jnp.sum(jnp.where(logits > v, probs, 0.0), axis=-1, keepdims=True) < p

  def halve(state):
    step, lo, hi = state
    mid = lo + (hi - lo) / 2
    keep = keeps(mid)
    return step + 1, jnp.where(keep, lo, mid), jnp.where(keep, mid, hi)

  def apart(state):  # some row's bounds are not yet adjacent floats
    step, lo, hi = state
    mid = lo + (hi - lo) / 2
    return (step < iterations) & jnp.any((mid > lo) & (mid < hi))

  state = (0, jnp.min(logits, axis=-1, keepdims=True) - 1.0,  # removes (mass above: 1)
           jnp.max(logits, axis=-1, keepdims=True))  # keeps (nothing above it)
  _, _, cutoff = jax.lax.while_loop(apart, halve, state)
  return jnp.where(logits < cutoff, NEG, logits)


def process_logits(logits: jax.Array, seen: jax.Array | None,
                   config: SamplingConfig) -> jax.Array:
  """Penalty, temperature, top-k, top-p (HF's order) -> the logits sampled from [B, V]."""
  logits = logits.astype(jnp.float32)
  if seen is not None:
    logits = repetition_penalty(logits, seen, config.repetition_penalty)
  if config.greedy:
    return logits
  logits = logits / config.temperature
  return top_p_filter(top_k_filter(logits, config.top_k), config.top_p)


def choose(key: jax.Array, logits: jax.Array, seen: jax.Array | None,
           config: SamplingConfig) -> jax.Array:
  """One token per row [B] int32 from logits [B, V]."""
  logits = process_logits(logits, seen, config)
  if config.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _mark(seen: jax.Array, tokens: jax.Array, where: jax.Array) -> jax.Array:
  """seen [B, V] with tokens [B, T] set where `where` [B, T] is."""
  rows = jnp.arange(seen.shape[0])[:, None]
  return seen.at[rows, jnp.where(where, tokens, 0)].max(where)


def sample_loop(step_fn: StepFn, first_logits: jax.Array, state: Any,
                prompt_tokens: jax.Array, prompt_mask: jax.Array, key: jax.Array,
                config: SamplingConfig) -> SampleOutput:
  """Samples up to config.max_new_tokens tokens per row (jit it with config static).

  Args:
    step_fn: (tokens [B] int32, state) -> (logits [B, V] for the next token, aux, state),
      called once per sampled token, with that token.
    first_logits: [B, V] logits of the first new token (after the prompt).
    state: step_fn's state (e.g. the KV cache).
    prompt_tokens, prompt_mask: [B, T] the prompts and their real tokens, read by the
      repetition penalty only.
    key: PRNG key (unused when greedy).
    config: the sampling settings.
  """
  batch, vocab = first_logits.shape
  steps = config.max_new_tokens
  eos = jnp.asarray(config.eos_ids or (-1,), jnp.int32)
  seen = None
  if config.repetition_penalty != 1.0:
    seen = _mark(jnp.zeros((batch, vocab), bool), prompt_tokens, prompt_mask.astype(bool))
  aux_shape = jax.eval_shape(lambda t, s: step_fn(t, s)[1],
                             jnp.zeros((batch,), jnp.int32), state)
  aux_buffer = jax.tree.map(lambda a: jnp.zeros((a.shape[0], steps, *a.shape[1:]), a.dtype),
                            aux_shape)
  init = dict(step=jnp.int32(0), logits=first_logits.astype(jnp.float32), state=state,
              key=key, seen=seen, done=jnp.zeros((batch,), bool),
              tokens=jnp.full((batch, steps), config.pad_id, jnp.int32),
              lengths=jnp.zeros((batch,), jnp.int32), aux=aux_buffer)

  def body(carry):
    key, step_key = jax.random.split(carry['key'])
    live = ~carry['done']
    token = jnp.where(live, choose(step_key, carry['logits'], carry['seen'], config),
                      config.pad_id)
    logits, aux, state = step_fn(token, carry['state'])
    keep = lambda buffer, value: buffer.at[:, carry['step']].set(
        jnp.where(live.reshape((-1,) + (1,) * (value.ndim - 1)), value, 0).astype(buffer.dtype))
    seen = carry['seen']
    if seen is not None:
      seen = _mark(seen, token[:, None], live[:, None])
    return dict(step=carry['step'] + 1, logits=logits.astype(jnp.float32), state=state,
                key=key, seen=seen, done=carry['done'] | jnp.isin(token, eos),
                tokens=carry['tokens'].at[:, carry['step']].set(token),
                lengths=carry['lengths'] + live.astype(jnp.int32),
                aux=jax.tree.map(keep, carry['aux'], aux))

  cond = lambda carry: (carry['step'] < steps) & ~jnp.all(carry['done'])
  out = jax.lax.while_loop(cond, body, init)
  return SampleOutput(out['tokens'], out['lengths'], out['aux'], out['state'])


@functools.partial(jax.jit, static_argnames=('model', 'config', 'return_hidden'))
def generate(model: transformer_lib.Transformer, params: Any, prompt_tokens: jax.Array,
             prompt_mask: jax.Array, key: jax.Array, config: SamplingConfig,
             return_hidden: bool = False) -> Generation:
  """Samples continuations of a padded prompt batch with the model's KV cache.

  Args:
    model: the Transformer (static).
    params: its inner 'params' dict.
    prompt_tokens: [B, T] int32, left-padded (right padding works too; left keeps the new
      tokens of all rows in the same cache slots). Every row needs >= 1 real token.
    prompt_mask: [B, T] bool, the real tokens.
    key: PRNG key.
    config: SamplingConfig (static).
    return_hidden: also return the generated tokens' and the prompts' mean hidden states.

  Returns:
    Generation(tokens [B, N], lengths [B], hidden [B, N, D] or None, prompt mean [B, D] or
    None), N = config.max_new_tokens.
  """
  batch, length = prompt_tokens.shape
  prompt_mask = prompt_mask.astype(bool)
  apply = functools.partial(model.apply, {'params': params})
  cache = transformer_lib.init_cache(model.config, batch, length + config.max_new_tokens)
  hidden, cache = apply(prompt_tokens, None, prompt_mask, cache,
                        method=transformer_lib.Transformer.hidden_states)  # [B, T, D]
  last = length - 1 - jnp.argmax(prompt_mask[:, ::-1], axis=1)  # [B] last real token
  last_hidden = jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [B, 1, D]
  first_logits = apply(last_hidden, method=transformer_lib.Transformer.logits)[:, 0]

  def step_fn(tokens, cache):
    step_hidden, cache = apply(tokens[:, None], cache['position'][:, None], None, cache,
                               method=transformer_lib.Transformer.hidden_states)
    logits = apply(step_hidden, method=transformer_lib.Transformer.logits)[:, 0]
    aux = step_hidden[:, 0].astype(jnp.float32) if return_hidden else ()
    return logits, aux, cache

  out = sample_loop(step_fn, first_logits, cache, prompt_tokens, prompt_mask, key, config)
  prompt_mean = None
  if return_hidden:
    weights = prompt_mask.astype(jnp.float32)
    prompt_mean = (jnp.einsum('BTD,BT->BD', hidden.astype(jnp.float32), weights)
                   / jnp.maximum(weights.sum(axis=1, keepdims=True), 1.0))
  return Generation(out.tokens, out.lengths, out.aux if return_hidden else None, prompt_mean)


def mean_generated_hidden(generation: Generation) -> jax.Array:
  """[B, D] mean of each row's generated tokens' hidden states (zeros for 0 tokens)."""
  steps = generation.hidden.shape[1]
  valid = (jnp.arange(steps)[None, :] < generation.lengths[:, None]).astype(jnp.float32)
  return (jnp.einsum('BND,BN->BD', generation.hidden, valid)
          / jnp.maximum(valid.sum(axis=1, keepdims=True), 1.0))
