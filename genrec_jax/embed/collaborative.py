"""Text-free collaborative item vectors from the training split (co-occurrence SVD).

Another run's learned item vectors (embed.cf_run, e.g. SASRec's, which LETTER aligns with)
are read by `run.run_item_vectors` and passed in as arrays.
"""

from __future__ import annotations

import numpy as np

from genrec_jax.data.dataset import Dataset


def cooccurrence_embeddings(dataset: Dataset, dim: int = 64, window: int = 5,
                            seed: int = 0, power_iterations: int = 8) -> np.ndarray:
  """[I, dim] item vectors from the training split alone: a truncated SVD (randomised, Halko
  et al. 2011) of the symmetric item–item matrix C_ij = log(1 + #times j follows i within
  `window` positions in a user's training sequence). Rows are U·sqrt(S). Items that never
  co-occur in training (e.g. only valid/test targets) get zero vectors.
  """
  rows, cols = [], []
  for user in range(dataset.num_users):
    seq = dataset.train_sequence(user)
    for gap in range(1, window + 1):
      rows.append(seq[:-gap])
      cols.append(seq[gap:])
  rows, cols = np.concatenate(rows), np.concatenate(cols)
  pair = np.concatenate([rows, cols]).astype(np.int64) * dataset.num_items + np.concatenate(
      [cols, rows])
  keys, counts = np.unique(pair, return_counts=True)
  i, j, weight = keys // dataset.num_items, keys % dataset.num_items, np.log1p(counts)

  def matmul(x):  # C @ x with C given by its nonzeros (i, j, weight)
    out = np.zeros((dataset.num_items, x.shape[1]))
    np.add.at(out, i, weight[:, None] * x[j])
    return out

  rank = min(dim, dataset.num_items)
  sketch = np.random.default_rng(seed).normal(size=(dataset.num_items, rank + 10))
  basis = np.linalg.qr(matmul(sketch))[0]
  for _ in range(power_iterations):  # C is symmetric: C^T C = C C
    basis = np.linalg.qr(matmul(basis))[0]
  small = basis.T @ matmul(basis)  # [r, r] symmetric projection of C
  eigenvalues, vectors = np.linalg.eigh(small)
  order = np.argsort(-np.abs(eigenvalues))[:rank]
  u = basis @ vectors[:, order]
  return (u * np.sqrt(np.abs(eigenvalues[order]))[None, :]).astype(np.float32)
