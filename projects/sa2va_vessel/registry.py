"""The project's registries: children of mmengine's root registries, under the scope ``sa2va_vessel``.

Every class a config names by ``type`` registers into one of these (``@MODELS.register_module()``).
With ``default_scope = 'sa2va_vessel'`` (``configs/_base_/default_runtime.py``) mmengine's runner
builds from them, and a name that is not the project's (``LoggerHook``, ``AdamW``, ``LinearLR``)
is looked up in mmengine's parent registry.

Each registry imports the modules that register into it (``locations``) the first time it looks a
name up, as OpenMMLab libraries do. So a config needs no ``custom_imports``, and importing one
module of the project (a tool's ``--help``) imports no model code.

mmengine's runner looks collate functions up with ``FUNCTIONS.get`` on its root registry, which
does not follow the default scope: a config names them with the scope,
``collate_fn=dict(type='sa2va_vessel.vessel_collate')``.

Outside a runner (``tools/test.py``, export) build inside :func:`project_scope`, or from these
registries directly.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import DefaultScope, Registry

SCOPE = 'sa2va_vessel'
_PACKAGE = 'projects.sa2va_vessel'

# Modules whose import registers the data side (datasets, transforms, collate functions). The
# runner also preloads them into the fork server of the loader workers (engine/runner.py).
DATA_MODULES = (
    f'{_PACKAGE}.datasets.vessel_dataset',
    f'{_PACKAGE}.datasets.video_dataset',
    f'{_PACKAGE}.datasets.epoch_samplers',
    f'{_PACKAGE}.datasets.transforms',
    f'{_PACKAGE}.datasets.collate',
)

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope=SCOPE,
    locations=[f'{_PACKAGE}.models.vessel_model', f'{_PACKAGE}.models.video_model'],
)
DATASETS = Registry(
    'dataset',
    parent=MMENGINE_DATASETS,
    scope=SCOPE,
    locations=[f'{_PACKAGE}.datasets.vessel_dataset', f'{_PACKAGE}.datasets.video_dataset'],
)
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=[f'{_PACKAGE}.datasets.transforms']
)
FUNCTIONS = Registry(
    'function',
    parent=MMENGINE_FUNCTIONS,
    scope=SCOPE,
    locations=[f'{_PACKAGE}.datasets.collate', f'{_PACKAGE}.datasets.video_dataset'],
)
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE, locations=[f'{_PACKAGE}.evaluation.vessel_metric'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope=SCOPE,
    locations=[
        f'{_PACKAGE}.engine.hooks',
        f'{_PACKAGE}.engine.master_weights',
        f'{_PACKAGE}.engine.monitor_hooks',
        f'{_PACKAGE}.engine.runtime_info',
        f'{_PACKAGE}.engine.validate_before_train',
        f'{_PACKAGE}.benchmark.end_to_end',
    ],
)
LOOPS = Registry(
    'loop',
    parent=MMENGINE_LOOPS,
    scope=SCOPE,
    locations=[f'{_PACKAGE}.engine.val_loop', f'{_PACKAGE}.engine.resumable_loop'],
)
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE, locations=[f'{_PACKAGE}.datasets.epoch_samplers']
)
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope=SCOPE,
    locations=[f'{_PACKAGE}.engine.optim_wrapper', f'{_PACKAGE}.engine.master_weights'],
)

# Nothing of the project's registers into these; they exist so that mmengine, building under the
# project's default scope, finds a registry of that scope in every tree it builds from (without
# one it warns and falls back to the root).
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope=SCOPE)
LOG_PROCESSORS = Registry('log_processor', parent=MMENGINE_LOG_PROCESSORS, scope=SCOPE)
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE)
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE
)
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, scope=SCOPE)
STRATEGIES = Registry('strategy', parent=MMENGINE_STRATEGIES, scope=SCOPE)
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, scope=SCOPE)
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, scope=SCOPE)

# The registries that hold the project's own classes (a test checks that every one is found).
PROJECT_REGISTRIES = {
    'MODELS': MODELS,
    'DATASETS': DATASETS,
    'TRANSFORMS': TRANSFORMS,
    'FUNCTIONS': FUNCTIONS,
    'METRICS': METRICS,
    'HOOKS': HOOKS,
    'LOOPS': LOOPS,
    'DATA_SAMPLERS': DATA_SAMPLERS,
    'OPTIM_WRAPPERS': OPTIM_WRAPPERS,
}

# mmengine imports the module ``<scope>.registry`` before it searches a scope's registries, and
# warns when that fails. The package here is ``projects.sa2va_vessel``, so the scope's name is
# pointed at this module.
sys.modules.setdefault(f'{SCOPE}.registry', sys.modules[__name__])


@contextlib.contextmanager
def project_scope() -> Iterator[None]:
    """Build with mmengine's root registries (e.g. ``Runner.build_dataloader``) in this scope."""
    with DefaultScope.overwrite_default_scope(SCOPE):
        yield
