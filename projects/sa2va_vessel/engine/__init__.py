"""The runner side: building mmengine runners (plain or DeepSpeed ZeRO-2) and their hooks.

Hooks and loops register in the project's registries (``projects/sa2va_vessel/registry.py``);
the names below are imported on first use, so ``tools/train.py --help`` imports no torch.
"""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        'BestCheckpointRecordHook': 'monitor_hooks',
        'GradientFlowGuardHook': 'hooks',
        'TrainableCheckpointHook': 'hooks',
        'UpdateNormHook': 'monitor_hooks',
        'ValVisualizationHook': 'monitor_hooks',
        'ValidateBeforeTrainHook': 'validate_before_train',
        'VesselValLoop': 'val_loop',
        'build_runner': 'runner',
        'resolve_deepspeed_config': 'runner',
        'train': 'runner',
        'warmup_cosine_schedule': 'schedule',
    },
)
