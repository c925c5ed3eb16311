"""What exists, for `--mode=list` and `--mode=show_config`: the config files with their
variants and suffixes, the methods, the datasets, and every key of one config."""

from __future__ import annotations

import importlib
import json
import pkgutil

import ml_collections

from genrec_jax import config as config_lib
from genrec_jax import methods

SHARED_CONFIG_MODULES = ('common',)  # imported by the config files, not configs themselves


def config_modules():
  """{file name: module} of every config file in the `configs` package."""
  import configs  # pylint: disable=g-import-not-at-top  (the repository's configs/ package)
  names = sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                 if m.name not in SHARED_CONFIG_MODULES)
  return {f'{name}.py': importlib.import_module(f'configs.{name}') for name in names}


def listing() -> str:
  """Config files (what each reproduces, variants, suffixes), methods and datasets."""
  lines = ['Configs (python -m genrec_jax.main --config=configs/<file>:<variant>[_<suffix>...]):']
  for name, module in config_modules().items():
    summary = (module.__doc__ or '').strip().splitlines()[0]
    lines.append(f'  {name:<18} {summary}')
    suffixes = ', '.join(module.SUFFIXES) or '-'
    lines.append(f'  {"":<18} variants: {", ".join(module.VARIANTS)}; suffixes: {suffixes}')
  lines.append(f'Methods (config.method): {", ".join(methods.available())}')
  lines.append(f'Datasets (base_config(method, dataset)): {", ".join(sorted(config_lib.DATASETS))}')
  lines.append('Every key of a config: --mode=show_config --config=configs/<file>:<variant>')
  return '\n'.join(lines)


def show(config: ml_collections.ConfigDict) -> str:
  """Every key of `config` with its value, as --config.<key>=<value> overrides name them."""
  flat = config_lib.flatten(config)
  width = max(len(k) for k in flat)
  return '\n'.join(f'{key:<{width}} = {json.dumps(value)}' for key, value in flat.items())
