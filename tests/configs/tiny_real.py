# The real model on the tiny checkpoint, for runner tests: no validation, a trace of each step.
_base_ = ['../../configs/vessel_lora_tiny.py']

custom_imports = dict(imports=['projects.sa2va_vessel.models', 'projects.sa2va_vessel.datasets',
                               'projects.sa2va_vessel.evaluation', 'projects.sa2va_vessel.engine',
                               'tests.toy_hooks'], allow_failed_imports=False)
train_cfg = dict(max_iters=3, val_interval=1000)
train_dataloader = dict(batch_size=1)
log_interval = 1
default_hooks = dict(validate_before_train=None,
                     logger=dict(interval=1),
                     checkpoint=dict(interval=1000),
                     gradient_guard=dict(interval=1))
log_processor = dict(window_size=1)
custom_hooks = [dict(type='RankTraceHook')]
