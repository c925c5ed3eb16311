"""Multi-host start-up: jax.distributed, explicit or auto-detected.

Explicit coordinator flags win (e.g. several local CPU processes); otherwise SLURM jobs with
more than one task and Cloud TPU pods are detected by jax itself; a plain run stays single
process. On CPU the cross-process collectives use gloo.
"""

from __future__ import annotations

import os

import jax


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1) -> None:
  multi_slurm = int(os.environ.get('SLURM_NTASKS', '1')) > 1
  tpu_pod = bool(os.environ.get('TPU_WORKER_HOSTNAMES'))
  if not (coordinator_address or multi_slurm or tpu_pod):
    return
  if jax.config.jax_platforms in (None, '', 'cpu') and not tpu_pod:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    jax.distributed.initialize()
