# Toy config for the runner tests: the ToySegModel stand-in on CPU, a few iterations.
_base_ = ['../../configs/_base_/default_runtime.py', '../../configs/_base_/schedules/lora_adamw.py']

custom_imports = dict(imports=['tests.toy_model', 'tests.toy_hooks'], allow_failed_imports=False)

deepspeed = 'none'
model = dict(type='ToySegModel')
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='toy_collate'),
    dataset=dict(type='ToyVesselDataset', num_samples=16),
)
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=6, val_interval=1000)
optim_wrapper = dict(type='SyncFreeOptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.0))
# warmup_cosine_schedule(6, warmup_ratio=0.34, warmup_start_factor=0.1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=6, eta_min_ratio=0.0),
]

log_interval = 1
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=log_interval),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3, max_keep_ckpts=-1),
    gradient_guard=dict(type='GradientFlowGuardHook', interval=log_interval),
)
checkpoint_keep_last = 2
log_processor = dict(window_size=1)
custom_hooks = [dict(type='RankTraceHook')]
