r"""AUO distractors mined from a trained run, written to a file: for every tail item, the head
items that run's beam ranks above it where it is the training target.

  python experiments/mine_distractors.py --run=runs/ghost_table/LC-Rec_per_prefix/seed1 \
      --out=experiments/distractors/ml100k_lcrec_prefix_seed1.npy
  python -m genrec_jax.main --config=configs/ghost_ins.py:cpu --workdir=runs/ghost_mined \
      --config.train.example_kind=prefix \
      --config.ghost.distractors_npy=experiments/distractors/ml100k_lcrec_prefix_seed1.npy

(`--config.ghost.distractors_run=RUN` mines them inside the Ghost run instead, cached in its
workdir.)

Why: on MovieLens-100k the paper's distractors (similar head items with the shortest common SID
prefix) are not the items that beat a missed tail target (experiments/tail_diagnosis.py: they
make up 1.4% of those items, as random head items would); the winners depend on the user.
Here, every per-prefix training example whose target v is a tail item is decoded with the
run's own scorer (its beam of decode.beam_size); the head items ranked above v (all of the top
K when v is not in it) are counted per v, and the K_b most frequent (ties: lower item index)
become v's distractors (run.mine_distractors, ghost.ranked_above). Rows with fewer than K_b
are left -1, and Ghost completes them with the paper's rule. Items are dataset indices, so the
file serves any tokenization of the same data (the run need not be a Ghost run); it is
written with a .json beside it naming its source.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genrec_jax import run  # pylint: disable=g-import-not-at-top,wrong-import-position


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True, help='workdir of a trained generative run')
  parser.add_argument('--k_b', type=int, default=5, help="ghost.k_b of the runs that use it")
  parser.add_argument('--out', required=True, help='the .npy to write (a .json beside it)')
  args = parser.parse_args()
  distractors, summary = run.mine_distractors(args.run, args.k_b)
  os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
  np.save(args.out, distractors)
  with open(os.path.splitext(args.out)[0] + '.json', 'w') as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))
