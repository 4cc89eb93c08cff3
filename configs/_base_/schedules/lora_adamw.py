# AdamW with linear warm-up then cosine decay, iteration based.
# ResumableIterBasedTrainLoop is mmengine's IterBasedTrainLoop with preemption and exact resume
# (projects/sa2va_vessel/engine/resumable_loop.py).
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=2000, val_interval=500)
val_cfg = None
test_cfg = None

optim_wrapper = dict(
    # with deepspeed='deepspeed_zero2' (_base_/default_runtime.py); DeepSpeed's engine steps, and
    # clip_grad / accumulative_counts fill the json's "auto" entries. deepspeed='none' trains with
    # 'SyncFreeOptimWrapper' (fp32 or bf16; engine/optim_wrapper.py) or 'AmpOptimWrapper' + dtype='float16'
    # (fp16 on a GPU).
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
    accumulative_counts=1,
)
# Linear warm-up over the first 3% of max_iters from 1e-3 x lr, then cosine to 0 at max_iters:
# engine.schedule.warmup_cosine_schedule(2000, warmup_ratio=0.03, warmup_start_factor=1e-3,
# eta_min_ratio=0.0). A config that changes max_iters writes its own (the runner refuses a
# schedule that does not end at max_iters).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=60),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=60, end=2000, eta_min_ratio=0.0),
]
