"""The runner side: building mmengine runners (plain or DeepSpeed ZeRO-2) and their hooks."""
from .hooks import GradientFlowGuardHook, TrainableCheckpointHook
from .validate_before_train import ValidateBeforeTrainHook
from .runner import build_runner, resolve_deepspeed_config, train, warmup_cosine_schedule

__all__ = ['GradientFlowGuardHook', 'TrainableCheckpointHook', 'ValidateBeforeTrainHook', 'build_runner',
           'resolve_deepspeed_config', 'train', 'warmup_cosine_schedule']
