# configs/vessel_lora_video_tiny.py for the in-process runner tests: the loader in the test process,
# no validation (the held-out video Dice comes from tools/test.py --video afterwards), and a trace of
# every step (its clips, exact losses and a hash of the trainable weights: tests/toy_resume.py).
_base_ = ['../../configs/vessel_lora_video_tiny.py']

custom_imports = dict(imports=['tests.toy_resume'], allow_failed_imports=False)
train_dataloader = dict(num_workers=0, persistent_workers=False)
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(val_interval=100000)
default_hooks = dict(validate_before_train=None)
custom_hooks = [dict(type='LossTraceHook')]
