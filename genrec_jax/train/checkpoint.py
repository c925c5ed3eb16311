"""Checkpoints with orbax: the resumable state and the best params.

  <workdir>/checkpoints/state/<step>/   train state + data-iterator state + loop bookkeeping,
                                        every `checkpoint_every` steps, keep-N, and on SIGTERM;
  <workdir>/checkpoints/best/<step>/    params of the best validation so far (keep 1).

Restoring takes the abstract target with its shardings, so a checkpoint written on one mesh
restores onto another. Runs resume from `state` (same workdir) before anything else; a new
run can take its params from another run's `best` (`train.init_from`).

A checkpoint that cannot be read (a file cut by a kill or a full disk, corrupted metadata) is
named with its step and path: resuming falls back to the newest intact `state` step; best
params that cannot be read, or whose shapes differ from the model's, are a CheckpointError.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

from genrec_jax.models.hf_loading import CheckpointError


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

  def restore(self, abstract_state, shardings):
    """(state, data_state, loop_state) of the newest step that reads back intact; unreadable
    newer steps are named in a warning (raises CheckpointError if none is intact)."""
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(abstract_state, shardings)),
        data=ocp.args.JsonRestore(), loop=ocp.args.JsonRestore())
    broken = []
    for step in sorted(self._state.all_steps(), reverse=True):
      try:
        out = self._state.restore(step, args=args)
      except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore/json errors)
        broken.append(f'step {step} ({self._state.directory / str(step)}): {_first_line(e)}')
        continue
      if broken:  # kept for inspection, out of the way of the steps to be saved again
        for bad in self._state.all_steps():
          if bad > step:
            path = self._state.directory / str(bad)
            os.rename(path, f'{path}.unreadable')
        self._state.reload()
        print(f'Unreadable checkpoints renamed to <step>.unreadable: {"; ".join(broken)}. '
              f'Resuming from step {step}.', flush=True)
      return out['state'], out['data'], out['loop']
    raise CheckpointError(f'No readable checkpoint under {self._state.directory}: '
                          f'{"; ".join(broken)}. Delete that folder to train from scratch, or '
                          'use a new workdir.')

  def save_best(self, step: int, params, metrics: dict) -> None:
    # A run killed after saving its best params but before its state resumes from an earlier
    # step and reaches this step again: the step's new params replace the old.
    if step in self._best.all_steps():
      self._best.delete(step)
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
      os.path.join(root, 'best'),
      item_handlers={'params': ocp.StandardCheckpointHandler(),
                     'metrics': ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           enable_async_checkpointing=False))


def restore_best_params(manager: ocp.CheckpointManager, abstract_params, shardings,
                        source: str = '', hint: str = ''):
  """The best params, checked against `abstract_params`' shapes first. source: how the run
  was named (e.g. 'train.init_from=runs/a'), hint: said after a shape mismatch."""
  step = manager.latest_step()
  path = manager.directory / str(step)
  source = source or str(manager.directory)
  if step is None:
    raise CheckpointError(f'{source}: no best checkpoint under {manager.directory}.')
  try:
    saved = manager.item_metadata(step)['params'].tree
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'{source}: the best checkpoint {path} is unreadable '
                          f'({_first_line(e)}); delete it and train again.') from None
  _check_shapes(saved, abstract_params, source, hint)
  try:
    out = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(abstract_params, shardings)),
        metrics=ocp.args.JsonRestore()))
  except Exception as e:  # pylint: disable=broad-except  (a cut file, corrupted metadata)
    raise CheckpointError(f'{source}: the best checkpoint {path} is unreadable '
                          f'({_first_line(e)}); delete it and train again.') from None
  return out['params']


def params_from_run(workdir: str, abstract_params, shardings, source: str = '',
                    model_config: dict | None = None):
  """Params of a run's best checkpoint (another run's for `train.init_from`, or this run's
  for evaluation), onto this mesh. A param missing or of another shape is named, with the
  model.* fields in which `model_config` (this run's) differs from that run's config.json."""
  source = source or f'train.init_from={workdir}'
  root = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(os.path.join(root, 'best')):
    raise CheckpointError(f'{source}: no checkpoints/best there; point it at the workdir of '
                          'a finished run of the same model.')
  hint = _model_fields_differing(workdir, model_config) if model_config is not None else ''
  manager = best_manager(root)
  try:
    return restore_best_params(manager, abstract_params, shardings, source, hint)
  finally:
    manager.close()


def _model_fields_differing(workdir: str, model_config: dict) -> str:
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      theirs = json.load(f).get('model', {})
  except (OSError, ValueError):
    return ''
  differ = [f'model.{k}={theirs.get(k, "<unset>")!r} there, {model_config.get(k, "<unset>")!r} '
            'here' for k in sorted(set(theirs) | set(model_config))
            if theirs.get(k) != model_config.get(k)]
  return f' The configs differ in {"; ".join(differ)}.' if differ else ''


def _check_shapes(saved, abstract, source: str, hint: str = '') -> None:
  flat = lambda tree: {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(x.shape)
                       for path, x in jax.tree_util.tree_leaves_with_path(tree)}
  saved, wanted = flat(saved), flat(abstract)
  problems = [f'{name}: {saved.get(name, "absent")} there, {shape} here'
              for name, shape in wanted.items() if saved.get(name) != shape]
  problems += [f'{name}: {shape} there, absent here' for name, shape in saved.items()
               if name not in wanted]
  if problems:
    more = f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''
    raise CheckpointError(f'{source}: the saved params do not fit this model: '
                          f'{"; ".join(problems[:5])}{more}.{hint} Use a run of the same '
                          'architecture (the same model.* fields).')


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:200] if text else ""}'
