"""Entropic optimal transport (Sinkhorn) with uniform marginals, for balanced assignment.

Given a cost C [N, K] (e.g. squared distances from N points to K centroids), the plan P is

  P = argmin_{P >= 0, P 1 = 1/N, P^T 1 = 1/K}  <P, C~> - epsilon H(P),
  C~_nk = (C_nk - min_k' C_nk') / s,   s = max_nk (C_nk - min_k' C_nk'),

so every point carries mass 1/N and every column (cluster) receives 1/K. The normalisation
C -> C~ is why `epsilon` is relative (a fraction of the cost range) and why huge costs cannot
overflow: subtracting a per-row constant leaves the plan unchanged (it is absorbed by the row
potential), and dividing by s puts C~ in [0, 1]. Only the scale changes the meaning of epsilon.

Iterations run on the log potentials (f [N], g [K]) with logsumexp, never on exp(-C/eps), so
small epsilon underflows nothing and gives no NaN:

  f <- log(1/N) - logsumexp_k(-C~/eps + g),   g <- log(1/K) - logsumexp_n(-C~/eps + f),
  P = exp(-C~/eps + f + g).

The last update is g's, so column sums are exact and row sums converge towards 1/N.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Costs are clipped to +-this before normalisation: +-inf (e.g. a masked pair) becomes a large
# finite cost, and the row-min shift of two clipped values cannot overflow float32.
_COST_CLIP = 1e37

# Rows per block in the updates: a [2048, K] block stays in cache between the max and the
# exp-sum passes; over the whole [N, K] matrix XLA:CPU was ~5x slower (N = 100k, K = 256).
_ROWS_PER_BLOCK = 2048

# Row potential of padding rows: exp(log_kernel + this) == 0, so they carry no mass.
_NO_MASS = -1e30


def _log_kernel(cost: jax.Array, epsilon: float) -> jax.Array:
  """-C~ / epsilon [N, K], with C~ the row-shifted, max-scaled cost in [0, 1]."""
  cost = jnp.clip(cost.astype(jnp.float32), -_COST_CLIP, _COST_CLIP)
  cost = cost - jnp.min(cost, axis=1, keepdims=True)  # plan-invariant, keeps exps in range
  scale = jnp.maximum(jnp.max(cost), jnp.finfo(jnp.float32).tiny)
  return -cost / (scale * epsilon)


def _logsumexp(values: jax.Array, axis: int) -> jax.Array:
  """Max-shifted log-sum-exp of finite values along axis (no inf handling needed)."""
  peak = jnp.max(values, axis=axis, keepdims=True)
  total = jnp.sum(jnp.exp(values - peak), axis=axis, keepdims=True)
  return jnp.squeeze(jnp.log(total) + peak, axis)


@functools.partial(jax.jit, static_argnames=('num_iters',))
def sinkhorn(cost: jax.Array, epsilon: float = 0.05, num_iters: int = 50) -> jax.Array:
  """Entropic OT plan [N, K] between uniform marginals for cost [N, K] (see module doc).

  Args:
    cost: [N, K] finite (or +-inf, clipped) costs; lower is better.
    epsilon: entropic regularisation relative to the normalised cost range (0, 1]; smaller is
      closer to the exact transport plan but needs more iterations.
    num_iters: number of (f, g) update pairs.

  Returns:
    plan [N, K] float32 >= 0; columns sum to 1/K, rows to ~1/N.
  """
  num_rows, num_cols = cost.shape
  log_row_mass = -jnp.log(float(num_rows))
  log_col_mass = -jnp.log(float(num_cols))
  block_rows = min(num_rows, _ROWS_PER_BLOCK)
  num_blocks = -(-num_rows // block_rows)
  padding = num_blocks * block_rows - num_rows
  # Zero-cost padding rows leave the row-shifted scale unchanged; their f is _NO_MASS.
  log_kernel = _log_kernel(jnp.pad(cost, ((0, padding), (0, 0))), epsilon)  # [N', K]
  kernel_blocks = log_kernel.reshape(num_blocks, block_rows, num_cols)
  is_real_row = (jnp.arange(num_blocks * block_rows) < num_rows).reshape(num_blocks, -1)

  def update_block(g, kernel_block, is_real):  # [B, K], [B] -> f [B], partial g [K]
    f = log_row_mass - _logsumexp(kernel_block + g[None, :], axis=1)
    f = jnp.where(is_real, f, _NO_MASS)
    return f, _logsumexp(kernel_block + f[:, None], axis=0)

  def update(_, potentials):
    _, g = potentials
    # One pass over the kernel per iteration: each block gives its f and its share of g.
    f, partial_g = jax.lax.map(lambda args: update_block(g, *args),
                               (kernel_blocks, is_real_row))  # [C, B], [C, K]
    return f.reshape(-1), log_col_mass - _logsumexp(partial_g, axis=0)

  init = (jnp.zeros((num_blocks * block_rows,), jnp.float32),
          jnp.zeros((num_cols,), jnp.float32))
  f, g = jax.lax.fori_loop(0, num_iters, update, init)
  return jnp.exp(log_kernel[:num_rows] + f[:num_rows, None] + g[None, :])


@jax.jit
def round_to_sizes(plan: jax.Array) -> jax.Array:
  """Column [N] int32 per row, with every column size floor(N/K) or floor(N/K) + 1.

  Greedy rounding: rows are visited from the most to the least confident (largest plan
  entry first), and each takes its largest-plan column among those not yet full. A column is
  full at floor(N/K) rows once the N mod K larger columns are taken. Sequential: a scan over
  the N rows, O(K) each (~0.3 s for 100k x 256 on 2 CPU cores).
  """
  num_rows, num_cols = plan.shape
  base_size, num_larger = divmod(num_rows, num_cols)
  order = jnp.argsort(-jnp.max(plan, axis=1))  # [N], most confident first

  def take(state, row):
    sizes, larger_used = state
    open_cols = (sizes < base_size) | ((sizes == base_size) & (larger_used < num_larger))
    col = jnp.argmax(jnp.where(open_cols, row, -1.0))  # plan >= 0, so -1 never wins
    larger_used = larger_used + (sizes[col] == base_size).astype(jnp.int32)
    return (sizes.at[col].add(1), larger_used), col.astype(jnp.int32)

  init = (jnp.zeros((num_cols,), jnp.int32), jnp.zeros((), jnp.int32))
  _, cols_in_order = jax.lax.scan(take, init, plan[order])  # [N]
  return jnp.zeros((num_rows,), jnp.int32).at[order].set(cols_in_order)


@functools.partial(jax.jit, static_argnames=('num_iters', 'exact_sizes'))
def balanced_assign(cost: jax.Array, epsilon: float = 0.05, num_iters: int = 50, *,
                    exact_sizes: bool = False) -> jax.Array:
  """Column index [N] int32 per row from the Sinkhorn plan of cost [N, K].

  Default: argmax of each row of the plan. Sizes are then N/K only up to rounding, and a
  diffuse plan (epsilon not small) rounds far from balanced: a row whose mass is spread goes
  to its single largest share. exact_sizes=True uses `round_to_sizes` instead, which
  guarantees sizes floor(N/K) or floor(N/K) + 1 (exactly N/K when K divides N).
  """
  plan = sinkhorn(cost, epsilon, num_iters)
  if exact_sizes:
    return round_to_sizes(plan)
  return jnp.argmax(plan, axis=1).astype(jnp.int32)
