"""Losses shared by the methods: pure, jittable, float32 inside, masked by -1 targets.

Each is tested against a slow reference in tests/test_losses.py. The methods' named loss
terms (methods/loss_terms.py, methods/sequential.py) are built from these.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def target_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log softmax(logits)[target] over the full last axis; logits [..., V], targets [...].
  A target of -1 (padding) gives 0."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(targets, 0)[..., None], axis=-1)[..., 0]
  return jnp.where(targets >= 0, picked, 0.0)


def unlikelihood(log_probs: jax.Array, valid: jax.Array) -> jax.Array:
  """−log(1 − p) of each valid entry of log_probs (0 elsewhere); p is capped at 1 − 1e-6
  so a certain token costs a large finite amount, never inf."""
  p = jnp.minimum(jnp.exp(log_probs), 1.0 - 1e-6)
  return jnp.where(valid, -jnp.log1p(-p), 0.0)


# ------------------------------------------------- item-level softmax over a catalogue --
# SimGR's loss: −log softmax_i(q · t_i)[target] over every item i of a catalogue table
# [I, D]. The full [B, I] logits may not fit (catalogues of 1e6 items), so the log-partition
# is computed chunk_size items at a time with a running max (online logsumexp), and its
# gradient by a custom VJP that recomputes each chunk's logits: memory O(B · chunk_size),
# never O(B · I), in the forward and the backward pass. Autodiff through the scan would keep
# every chunk's logits for the backward pass, i.e. the whole [B, I] again.

_NEG = -1e30  # large finite negative for padded columns and the running max's start


def _chunk_starts(num_items: int, chunk_size: int):
  """(chunk width C, starts [N], first_new [N]): chunk n reads rows starts[n] .. + C of the
  table; the last one is moved back to end at the last row (no padded copy of the table),
  and its rows below first_new[n] were read by the chunk before, so they are masked."""
  chunk = max(1, min(chunk_size, num_items))
  count = -(-num_items // chunk)
  first_new = jnp.arange(count, dtype=jnp.int32) * chunk
  return chunk, jnp.minimum(first_new, num_items - chunk), first_new


def _chunk_logits(queries, table, start, first_new, chunk):
  rows = jax.lax.dynamic_slice_in_dim(table, start, chunk).astype(jnp.float32)  # [C, D]
  logits = jnp.einsum('BD,CD->BC', queries, rows)
  new = start + jnp.arange(chunk) >= first_new
  return jnp.where(new[None, :], logits, _NEG), rows


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def chunked_logsumexp(queries: jax.Array, table: jax.Array, chunk_size: int) -> jax.Array:
  """[B] log Σ_i exp(queries[b] · table[i]) over every row i of table [I, D], computed
  chunk_size rows at a time (values and gradients equal the unchunked
  logsumexp(queries @ table.T, axis=1) up to float32 rounding). Besides the table and its
  gradient, memory is O(B · chunk_size)."""
  return _chunked_logsumexp_fwd(queries, table, chunk_size)[0]


def _chunked_logsumexp_fwd(queries, table, chunk_size):
  q = queries.astype(jnp.float32)
  chunk, starts, first_new = _chunk_starts(table.shape[0], chunk_size)

  def body(carry, xs):
    run_max, run_sum = carry
    logits, _ = _chunk_logits(q, table, *xs, chunk)  # [B, C]
    new_max = jnp.maximum(run_max, logits.max(axis=1))
    run_sum = (run_sum * jnp.exp(run_max - new_max)
               + jnp.exp(logits - new_max[:, None]).sum(axis=1))
    return (new_max, run_sum), None

  start = (jnp.full(q.shape[:1], _NEG, jnp.float32), jnp.zeros(q.shape[:1], jnp.float32))
  (run_max, run_sum), _ = jax.lax.scan(body, start, (starts, first_new))
  lse = run_max + jnp.log(run_sum)
  return lse, (queries, table, lse)


def _chunked_logsumexp_bwd(chunk_size, residuals, g):
  queries, table, lse = residuals
  q = queries.astype(jnp.float32)
  chunk, starts, first_new = _chunk_starts(table.shape[0], chunk_size)
  g = g.astype(jnp.float32)

  def body(carry, xs):
    grad_q, grad_table = carry
    start, new_from = xs
    logits, rows = _chunk_logits(q, table, start, new_from, chunk)
    # d lse_b / d logit_bi = softmax_bi; masked (already counted) rows have probability 0.
    weights = jnp.exp(logits - lse[:, None]) * g[:, None]  # [B, C]
    grad_q = grad_q + jnp.einsum('BC,CD->BD', weights, rows)
    grad_rows = jax.lax.dynamic_slice_in_dim(grad_table, start, chunk) + jnp.einsum(
        'BC,BD->CD', weights, q).astype(grad_table.dtype)
    return (grad_q, jax.lax.dynamic_update_slice_in_dim(grad_table, grad_rows, start, 0)), None

  (grad_q, grad_table), _ = jax.lax.scan(
      body, (jnp.zeros_like(q), jnp.zeros(table.shape, jnp.float32)), (starts, first_new))
  return grad_q.astype(queries.dtype), grad_table.astype(table.dtype)


chunked_logsumexp.defvjp(_chunked_logsumexp_fwd, _chunked_logsumexp_bwd)


def item_softmax_cross_entropy(queries: jax.Array, table: jax.Array, targets: jax.Array,
                               chunk_size: int) -> jax.Array:
  """[B] −log softmax_i(queries[b] · table[i])[targets[b]] over the whole catalogue table
  [I, D], with the log-partition computed in chunks (see chunked_logsumexp). A target of
  -1 gives 0. Scale queries (e.g. by 1 / temperature) before the call."""
  lse = chunked_logsumexp(queries, table, chunk_size)
  picked = jnp.einsum('BD,BD->B', queries.astype(jnp.float32),
                      table[jnp.maximum(targets, 0)].astype(jnp.float32))
  return jnp.where(targets >= 0, lse - picked, 0.0)


def sampled_softmax_cross_entropy(queries: jax.Array, table: jax.Array, targets: jax.Array,
                                  negatives: jax.Array, log_q: jax.Array) -> jax.Array:
  """[B] sampled softmax with logQ correction (Jean et al. 2015; Yi et al. 2019): the softmax
  runs over {target} ∪ negatives only, every logit q · t_i corrected by −log Q(i) (Q the
  distribution the negatives were drawn from, with replacement), so that its expectation
  approaches the full softmax's gradient. Negatives equal to the row's target (accidental
  hits) are left out. negatives [S] shared by the batch; log_q [I]; a target of -1 gives 0."""
  q = queries.astype(jnp.float32)
  safe = jnp.maximum(targets, 0)
  positive = (jnp.einsum('BD,BD->B', q, table[safe].astype(jnp.float32)) - log_q[safe])
  sampled = (jnp.einsum('BD,SD->BS', q, table[negatives].astype(jnp.float32))
             - log_q[negatives][None, :])
  sampled = jnp.where(negatives[None, :] == targets[:, None], _NEG, sampled)
  lse = jax.nn.logsumexp(jnp.concatenate([positive[:, None], sampled], axis=1), axis=1)
  return jnp.where(targets >= 0, lse - positive, 0.0)


def sampled_bce(pos_logits: jax.Array, neg_logits: jax.Array,
                valid: jax.Array) -> jax.Array:
  """Binary cross-entropy of a positive against sampled negatives, per row:
  −log σ(pos) − mean_k log(1 − σ(neg_k)), 0 where not valid.

  pos_logits [...], neg_logits [..., K], valid [...]. The negatives are averaged, as
  GenAIR's public code averages them (its BCEWithLogitsLoss over all negative entries).
  """
  pos = jax.nn.softplus(-pos_logits.astype(jnp.float32))  # −log σ(x) = softplus(−x)
  neg = jnp.mean(jax.nn.softplus(neg_logits.astype(jnp.float32)), axis=-1)
  return jnp.where(valid, pos + neg, 0.0)


def sample_negatives(rng: jax.Array, exclude: jax.Array, num_items: int,
                     num: int) -> jax.Array:
  """[N, num] items drawn uniformly (with replacement) from the items not in exclude [N, E].

  exclude holds item ids, -1 for padding (duplicates allowed). Exact, with no rejection
  loop: the j-th free item is j + #{k : e_k − k <= j} over the row's sorted distinct
  excluded items e_0 < e_1 < ... (e_k − k free items lie below e_k). A row must leave at
  least one item free.
  """
  sentinel = num_items + exclude.shape[1] + 1  # above every shifted real entry
  e = jnp.sort(jnp.where(exclude >= 0, exclude, sentinel), axis=1)
  repeated = jnp.concatenate([jnp.zeros_like(e[:, :1], bool), e[:, 1:] == e[:, :-1]], 1)
  e = jnp.sort(jnp.where(repeated, sentinel, e), axis=1)  # distinct items first, ascending
  num_excluded = jnp.sum(e < num_items, axis=1)  # [N]
  free = num_items - num_excluded
  j = jnp.floor(jax.random.uniform(rng, (exclude.shape[0], num)) *
                free[:, None]).astype(jnp.int32)
  j = jnp.minimum(j, free[:, None] - 1)  # uniform() < 1, but stay in range under rounding
  shifted = jnp.where(e < num_items, e - jnp.arange(e.shape[1]), sentinel)  # [N, E]
  return j + jnp.sum(shifted[:, None, :] <= j[:, :, None], axis=-1).astype(jnp.int32)


def behavioural_calibration(vectors: jax.Array, weights: jax.Array,
                            counts: jax.Array) -> jax.Array:
  """GenAIR's calibration loss: −(1/(N(N−1))) Σ_{i≠j} w_ij ||ê_i − ê_j||², ê = v/||v||.

  vectors [n, d] (one row per distinct item, or per batch target), weights [n, n] (w_ij =
  exp(−γ s_ij), 1 for pairs that never co-occur), counts [n] how often each row is a target
  in the batch (0/1 masks padding). The sum runs over the N = Σ counts targets: rows
  repeated c times count c² pairs, and a pair of equal items has distance 0, so summing
  over all (i, j) equals summing over i ≠ j. One [n, n] Gram matrix, no loop over pairs.
  """
  v = vectors.astype(jnp.float32)
  unit = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
  sq = jnp.sum(unit * unit, axis=-1)  # 1, or 0 for a zero vector
  gram = jnp.einsum('id,jd->ij', unit, unit)
  distances = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
  c = counts.astype(jnp.float32)
  total = jnp.einsum('i,ij,j->', c, weights.astype(jnp.float32) * distances, c)
  n = jnp.sum(c)
  return -total / jnp.maximum(n * (n - 1.0), 1.0)


def symmetric_kl(logits_p: jax.Array, logits_q: jax.Array, temperature: float = 1.0) -> jax.Array:
  """KL(p ‖ q) + KL(q ‖ p) over the last axis, p = softmax(logits_p / T), q likewise; [...]."""
  log_p = jax.nn.log_softmax(logits_p.astype(jnp.float32) / temperature, axis=-1)
  log_q = jax.nn.log_softmax(logits_q.astype(jnp.float32) / temperature, axis=-1)
  return jnp.sum((jnp.exp(log_p) - jnp.exp(log_q)) * (log_p - log_q), axis=-1)


def info_nce(queries: jax.Array, keys: jax.Array, valid: jax.Array,
             temperature: float = 1.0) -> jax.Array:
  """−log softmax_j(q_i · k_j / τ)[i] of each valid row i, over the valid keys j (in-batch
  negatives, one direction; swap queries and keys for the other); 0 for invalid rows.

  queries, keys [N, D] (row i of each is the same item's two views), valid [N] bool.
  Dot products, not cosines: normalise the views first for a cosine InfoNCE.
  """
  logits = jnp.einsum('ND,MD->NM', queries.astype(jnp.float32), keys.astype(jnp.float32))
  logits = jnp.where(valid[None, :], logits / temperature, -1e30)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return jnp.where(valid, -jnp.diagonal(log_probs), 0.0)
