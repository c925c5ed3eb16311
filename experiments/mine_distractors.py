r"""AUO distractors mined from a trained run: for every tail item, the head items that run's
beam ranks above it where it is the training target.

  python experiments/mine_distractors.py --run=runs/ghost_table/LC-Rec_per_prefix/seed1 \
      --out=experiments/distractors/ml100k_lcrec_prefix_seed1.npy
  python -m genrec_jax.main --config=configs/ghost_ins.py:cpu --workdir=runs/ghost_mined \
      --config.train.example_kind=prefix \
      --config.ghost.distractors_npy=experiments/distractors/ml100k_lcrec_prefix_seed1.npy

Why: on MovieLens-100k the paper's distractors (similar head items with the shortest common SID
prefix) are not the items that beat a missed tail target (experiments/tail_diagnosis.py: they
make up 1.4% of those items, as random head items would); the winners depend on the user.
Here, every per-prefix training example whose target v is a tail item is decoded with the
run's own scorer (its beam of decode.beam_size); the head items ranked above v (all of the top
K when v is not in it) are counted per v, and the K_b most frequent (ties: lower item index)
become v's distractors. Rows with fewer than K_b are left -1, and Ghost completes them with the
paper's rule. Items are dataset indices, so the file serves any tokenization of the same data
(the run need not be a Ghost run); it is written with a .json beside it naming its source.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import progress  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from genrec_jax.data.dataset import prefix_histories  # pylint: disable=g-import-not-at-top,wrong-import-position


def ranked_above(top: np.ndarray, targets: np.ndarray, is_head: np.ndarray,
                 k_b: int) -> np.ndarray:
  """[I, k_b]: for every tail item, the head items of `top` [N, K] ranked above it in the
  examples whose target it is (all K where it is missing), most frequent first (ties: lower
  index); -1 where there are fewer. Rows of head items are -1."""
  num_items = len(is_head)
  above = np.cumsum(top == targets[:, None], axis=1) == 0  # the slots before the target's
  counted = above & (top >= 0) & is_head[np.maximum(top, 0)] & ~is_head[targets][:, None]
  pairs = np.broadcast_to(targets[:, None], top.shape)[counted] * num_items + top[counted]
  codes, counts = np.unique(pairs, return_counts=True)
  tail, item = codes // num_items, codes % num_items
  order = np.lexsort((item, -counts, tail))  # by tail item, then count desc, then index
  tail, item = tail[order], item[order]
  rank = np.arange(len(tail)) - np.searchsorted(tail, tail, side='left')
  out = np.full((num_items, k_b), -1, np.int64)
  keep = rank < k_b
  out[tail[keep], rank[keep]] = item[keep]
  return out


def mine(workdir: str, k_b: int) -> tuple[np.ndarray, dict]:
  """(distractors [I, k_b], a summary) from the run in `workdir`."""
  config, dataset, method, params = run.load_run(workdir)
  users, positions = dataset.train_examples()
  tail = ~dataset.is_head[dataset.seq_items[positions]]
  users, positions = users[tail], positions[tail]
  histories, _, targets = prefix_histories(dataset, positions, users)
  batch_size, k = config.eval.batch_size, max(config.eval.ks)
  tops = []
  for start in progress.bar(range(0, len(targets), batch_size), desc='Mining distractors',
                            unit='batch'):
    rows = np.arange(start, min(start + batch_size, len(targets)))
    padded = np.pad(rows, (0, batch_size - len(rows)))  # one compiled shape
    batch = {'user': users[padded].astype(np.int32), 'history': histories[padded],
             'target': targets[padded]}
    tops.append(np.asarray(method.predict_topk(params, batch, k)[0])[:len(rows)])
  top = np.concatenate(tops)
  distractors = ranked_above(top, targets, dataset.is_head, k_b)
  summary = {'run': os.path.abspath(workdir), 'dataset': dataset.name,
             'num_items': int(dataset.num_items), 'k_b': k_b, 'top_k': k,
             'tail_examples': int(len(targets)),
             'tail_items_with_k_b': int((distractors[~dataset.is_head] >= 0).all(1).sum()),
             'tail_items': int((~dataset.is_head).sum()),
             'tail_targets_in_top_k': float((top == targets[:, None]).any(1).mean())}
  return distractors, summary


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True, help='workdir of a trained generative run')
  parser.add_argument('--k_b', type=int, default=5, help="ghost.k_b of the runs that use it")
  parser.add_argument('--out', required=True, help='the .npy to write (a .json beside it)')
  args = parser.parse_args()
  distractors, summary = mine(args.run, args.k_b)
  os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
  np.save(args.out, distractors)
  with open(os.path.splitext(args.out)[0] + '.json', 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))
