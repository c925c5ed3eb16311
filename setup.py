"""genrec_jax: JAX/Flax generative recommendation with semantic IDs."""

from setuptools import find_packages
from setuptools import setup

# Versions known to work together (see README); pinned so results reproduce.
INSTALL_REQUIRES = [
    'jax[cpu]==0.10.2',
    'jaxlib==0.10.2',
    'flax==0.12.8',
    'optax==0.2.8',
    'orbax-checkpoint==0.12.8',
    'ml-collections==1.1.0',
    'absl-py==2.5.1',
    'transformers==5.23.0',
    'tokenizers==0.23.3',
    'safetensors==0.8.0',
    'tensorflow-datasets==4.9.10',
    'array-record==0.8.6',
    'importlib_resources==7.1.0',  # tensorflow-datasets needs it without TensorFlow
    'grain==0.2.18',
    'numpy==2.4.6',
    'matplotlib==3.11.2',
    'tqdm==4.70.1',
    'tensorboardX==2.6.4',
    'gguf==0.19.0',  # reads GGUF checkpoints (SmolLM2), numpy only
    'bm25s==0.3.16',  # GENPLUGIN's context retrieval
]

setup(
    name='genrec_jax',
    version='0.1.0',
    description=__doc__,
    packages=find_packages(include=['genrec_jax', 'genrec_jax.*', 'configs']),
    license='Apache-2.0',
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={'dev': ['pytest==9.0.3', 'pytest-xdist==3.8.0']},
)
