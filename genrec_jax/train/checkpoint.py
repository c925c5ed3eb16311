"""Checkpoints with orbax: the resumable state and the best params.

  <workdir>/checkpoints/state/<step>/   train state + data-iterator state + loop bookkeeping,
                                        every `checkpoint_every` steps, keep-N, and on SIGTERM;
  <workdir>/checkpoints/best/<step>/    params of the best validation so far (keep 1).

Restoring takes the abstract target with its shardings, so a checkpoint written on one mesh
restores onto another. Runs resume from `state` (same workdir) before anything else; a new
run can take its params from another run's `best` (`train.init_from`).
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


class Checkpoints:
  """Resumable state and best params under <workdir>/checkpoints."""

  def __init__(self, workdir: str, keep: int = 2):
    root = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._state = ocp.CheckpointManager(
        os.path.join(root, 'state'), item_names=('state', 'data', 'loop'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False))
    self._best = best_manager(root)

  def latest_step(self) -> int | None:
    return self._state.latest_step()

  def save(self, step: int, state, data_state: dict, loop_state: dict) -> None:
    self._state.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        loop=ocp.args.JsonSave(loop_state)), force=True)
    self._state.wait_until_finished()

  def restore(self, abstract_state, shardings, step: int | None = None):
    """(state, data_state, loop_state) of `step` (default: the latest)."""
    step = self._state.latest_step() if step is None else step
    out = self._state.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(abstract_state, shardings)),
        data=ocp.args.JsonRestore(), loop=ocp.args.JsonRestore()))
    return out['state'], out['data'], out['loop']

  def save_best(self, step: int, params, metrics: dict) -> None:
    self._best.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), metrics=ocp.args.JsonSave(metrics)), force=True)
    self._best.wait_until_finished()

  def has_best(self) -> bool:
    return self._best.latest_step() is not None

  def restore_best(self, abstract_params, shardings):
    return restore_best_params(self._best, abstract_params, shardings)

  def best_metrics(self) -> dict:
    """The validation metrics saved with the best params ({} if none were)."""
    step = self._best.latest_step()
    if step is None:
      return {}
    return self._best.restore(step, args=ocp.args.Composite(
        metrics=ocp.args.JsonRestore()))['metrics'] or {}

  def close(self):
    self._state.close()
    self._best.close()


def best_manager(root: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(root, 'best'), item_names=('params', 'metrics'),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))


def restore_best_params(manager: ocp.CheckpointManager, abstract_params, shardings):
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'no best checkpoint under {manager.directory}')
  out = manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(_abstract(abstract_params, shardings)),
      metrics=ocp.args.JsonRestore()))
  return out['params']


def params_from_run(other_workdir: str, abstract_params, shardings):
  """Params of another run's best checkpoint (`train.init_from`), onto this mesh."""
  root = os.path.join(os.path.abspath(other_workdir), 'checkpoints')
  if not os.path.isdir(os.path.join(root, 'best')):
    raise FileNotFoundError(
        f'train.init_from={other_workdir}: no checkpoints/best there; point it at the workdir '
        'of a finished run of the same model.')
  manager = best_manager(root)
  try:
    return restore_best_params(manager, abstract_params, shardings)
  finally:
    manager.close()
