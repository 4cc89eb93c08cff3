# The demo and test config: the tiny random checkpoint and synthetic vessels, CPU, minutes.
#   python tools/make_tiny_sa2va.py demo_work/tiny_sa2va
#   python tools/make_synthetic_vessels.py demo_work/synthetic --n 16 --size 256
#   SA2VA_MODEL_PATH=demo_work/tiny_sa2va VESSEL_DATA_ROOT=demo_work/synthetic \
#   python tools/train.py configs/vessel_lora_tiny.py
_base_ = ['./vessel_lora.py']

model_path = '{{$SA2VA_MODEL_PATH:demo_work/tiny_sa2va}}'
data_root = '{{$VESSEL_DATA_ROOT:demo_work/synthetic}}'

deepspeed = 'none'
mixed_precision = None
model = dict(model_path=model_path, dtype='float32', trainable_dtype=None, lora=dict(r=8, alpha=16, dropout=0.0),
             gradient_checkpointing=False, sam2_feature_cache_size=256, sam2_side_stream=False,
             compile_llm_layers=False, compile_frozen_encoders=False)
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=True,  # one worker prepares while the step runs
    pin_memory=False, drop_last=False, collate_fn=dict(pad_to_multiple_of=None),
    # no augmentation here (the real config has it): unaugmented samples let the frozen-feature
    # cache serve every epoch, which keeps the CPU demo at minutes
    dataset=dict(data_root=data_root, model_path=model_path, max_dynamic_patch=1, transform=None))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, pin_memory=False, collate_fn=dict(pad_to_multiple_of=None),
    dataset=dict(data_root=data_root, model_path=model_path, max_dynamic_patch=1))
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=300, val_interval=100)
# the _base_ warm-up + cosine for 300 iterations: warmup_cosine_schedule(300, 0.03, 1e-3)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=9),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=9, end=300, eta_min_ratio=0.0),
]
val_cfg = dict(max_new_tokens=16)  # generation-mode validation too (vessel/gen_*), short answers
optim_wrapper = dict(type='SyncFreeOptimWrapper', optimizer=dict(type='AdamW', lr=3e-3, weight_decay=0.0),
                     clip_grad=dict(max_norm=1.0))
log_interval = 20
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=log_interval),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=-1, save_last=True),
    gradient_guard=dict(type='GradientFlowGuardHook', interval=log_interval))
log_processor = dict(window_size=log_interval)
