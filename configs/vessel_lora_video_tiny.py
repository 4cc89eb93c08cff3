# Video demo/test config: the tiny random checkpoint (with video memory) and synthetic moving
# sequences, CPU, about a minute. Held-out video Dice before and after (README, "Video"):
#   python tools/make_tiny_sa2va.py demo_work/tiny_sa2va_video --video-memory
#   python tools/make_synthetic_vessels.py demo_work/sequences --videos 5 --frames 3 --size 64 --val-fraction 0.4
#   export SA2VA_MODEL_PATH=demo_work/tiny_sa2va_video VESSEL_DATA_ROOT=demo_work/sequences
#   python tools/test.py configs/vessel_lora_video_tiny.py $SA2VA_MODEL_PATH --video --threshold 0.5
#   python tools/train.py configs/vessel_lora_video_tiny.py --work-dir demo_work/video_run
#   python tools/test.py configs/vessel_lora_video_tiny.py demo_work/video_run/iter_30.pth --video --threshold 0.5
# tests/test_video_training.py runs exactly this (without the in-training validation).
_base_ = ['./vessel_lora_tiny.py']

model_path = '{{$SA2VA_MODEL_PATH:demo_work/tiny_sa2va_video}}'
data_root = '{{$VESSEL_DATA_ROOT:demo_work/sequences}}'

# Departures from the real recipe, for a random tiny model to learn in tens of CPU steps:
# - a Dice-weighted mask loss: with the recipe's BCE 2.0 / Dice 0.5 the tiny model first predicts
#   no vessel at all and needs ~100 steps to come back (measured on these sequences);
# - the loss at 256 px, which is above the 64-128 px of the synthetic frames (nothing is lost; the
#   real config keeps 1024 for 1-2 px vessels in large images);
# - the frozen-feature caches on: the frames are read unchanged, so each frame meets the SAM2
#   encoder (1.3 s per frame on a CPU core) once per run.
model = dict(type='Sa2VAVideoVesselModel', model_path=model_path, mask_loss_weight=0.5, dice_loss_weight=2.0,
             loss_resolution=256, sam2_feature_cache_size=256, vision_feature_cache=True)
optim_wrapper = dict(optimizer=dict(lr=3e-2))
# EpochStreamSampler: DefaultSampler's order with the epoch in each index, so every epoch draws fresh
# clip starts (in every worker), a resumed run draws the same ones (datasets/video_dataset.py), and the
# loader never restarts at an epoch boundary (datasets/epoch_samplers.py)
train_dataloader = dict(
    batch_size=1, sampler=dict(type='sa2va_vessel.EpochStreamSampler', shuffle=True), collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='train',
                 model_path=model_path, clip_len=2, frame_stride=1, clips_per_video=2))
val_dataloader = dict(
    batch_size=1, collate_fn=dict(type='sa2va_vessel.video_collate'),
    dataset=dict(type='VesselVideoDataset', _delete_=True, data_root=data_root, split='val',
                 model_path=model_path, clip_len=3, frame_stride=1, random_question=False))
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=30, val_interval=30)
# the _base_ warm-up + cosine for 30 iterations: warmup_cosine_schedule(30, 0.03, 1e-3)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=30, eta_min_ratio=0.0),
]
log_interval = 10
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=log_interval),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=30, max_keep_ckpts=-1, save_last=True),
    gradient_guard=dict(type='GradientFlowGuardHook', interval=log_interval),
    val_visualization=None)
log_processor = dict(window_size=log_interval)
