"""The runner side: building mmengine runners (plain or DeepSpeed ZeRO-2) and their hooks."""
from .hooks import GradientFlowGuardHook, TrainableCheckpointHook
from .monitor_hooks import BestCheckpointRecordHook, UpdateNormHook, ValVisualizationHook
from .validate_before_train import ValidateBeforeTrainHook
from .val_loop import VesselValLoop
from .runner import build_runner, resolve_deepspeed_config, train, warmup_cosine_schedule

__all__ = ['BestCheckpointRecordHook', 'GradientFlowGuardHook', 'TrainableCheckpointHook',
           'UpdateNormHook', 'ValVisualizationHook', 'ValidateBeforeTrainHook', 'build_runner',
           'resolve_deepspeed_config', 'train', 'warmup_cosine_schedule', 'VesselValLoop']
