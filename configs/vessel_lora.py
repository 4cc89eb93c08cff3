# The real default: LoRA fine-tuning of Sa2VA-InternVL3-2B on a vessel data set, bf16, ZeRO-2,
# for 80-141 GB GPUs (A100/H100/H200; 24 GB cards: configs/vessel_lora_8b_24g.py).
#   SA2VA_MODEL_PATH=/path/to/Sa2VA-InternVL3-2B VESSEL_DATA_ROOT=/path/to/prepared \
#   tools/dist_train.sh configs/vessel_lora.py 8
# Global batch = 32 per GPU x 1 accumulation x GPUs: 256 on 8 GPUs, the official fine-tune's
# global batch at its lr 4e-5 (on fewer GPUs raise optim_wrapper.accumulative_counts to keep it).
# Measured on one H200 through tools/benchmark.py --end-to-end (docs/PERFORMANCE.md).
_base_ = ['./_base_/default_runtime.py', './_base_/schedules/lora_adamw.py',
          './_base_/models/sa2va_lora.py', './_base_/datasets/vessel.py']

deepspeed = 'deepspeed_zero2'
# The runner for a run of one process (python tools/train.py, one GPU): the plain runner (bf16
# trainables with fp32 masters, below), where ZeRO-2 partitions nothing and still hooks and copies
# every gradient twice in the backward. Measured on one H200 (docs/PERFORMANCE.md, calls 62-63, CUDA
# graphs on): 2B b32 62.4 samples/s (ZeRO-2: 1.6% slower), 8B b32 35.0; b8 56.3 (host-bound).
# Several processes keep ZeRO-2.
# None: ZeRO-2 on one GPU too (a plain checkpoint resumes only on one process).
deepspeed_one_process = 'none'
mixed_precision = 'bf16'
# The plain runner's trainables run in bf16 and AdamW updates fp32 masters of them, as ZeRO-2's
# engine does (engine/master_weights.py): no autocast in every forward, 4 bytes per trainable
# parameter more than fp32 trainables. False: fp32 trainables under autocast (least memory).
master_weights = True
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=2000, val_interval=200)
# Validation in both modes: teacher-forced (vessel/*) and generation, where the model writes
# [SEG] itself as the official predict_forward makes it (vessel/gen_*, incl. gen_missing_seg_rate).
# Drop VesselGenSegMetric from val_evaluator to validate teacher-forced only.
val_cfg = dict(type='VesselValLoop', _delete_=True, max_new_tokens=32)
val_evaluator = [dict(type='VesselSegMetric'), dict(type='VesselGenSegMetric')]
# Scale: one scheme for training and prediction on large images (docs/RECIPE.md). Images larger
# than `window` train on random native-resolution crops of `window` px and are predicted by
# tools/predict.py with sliding windows of the same size (it reads this crop size from the config).
window = 1024
# Augmentation (datasets/transforms.py): crop to the window, flips, rot90, a small rotation/scale
# warp (masks and FOV follow every geometric step, nearest), brightness/contrast/gamma/CLAHE.
# With it the frozen-feature caches cannot help (no sample reaches SAM2 twice unchanged); the
# runner switches them off and logs it.
optim_wrapper = dict(type='DeepSpeedOptimWrapper',  # the runner sets MasterWeightOptimWrapper if the plain one runs
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05,
                                    fused=True),  # one kernel over all trainables (torch's fused AdamW)
                     clip_grad=dict(max_norm=1.0), accumulative_counts=1)
train_dataloader = dict(batch_size=32, num_workers=8, pin_memory=True, drop_last=True,
                        dataset=dict(transform=dict(type='VesselAugment', crop_size=window)),
                        # a few length buckets, so compiled layers see a few shapes
                        collate_fn=dict(type='sa2va_vessel.vessel_collate', pad_to_multiple_of=64))
val_dataloader = dict(pin_memory=True, collate_fn=dict(type='sa2va_vessel.vessel_collate', pad_to_multiple_of=64))
# Speed on a large GPU (docs/PERFORMANCE.md): no activation recomputation at micro-batch 32 (2B:
# ~47 GiB), compiled decoder layers and frozen encoders (recompiles bounded: models/speed.py), and
# the compiled layers replayed as CUDA graphs (less host time per layer; models/speed.py).
model = dict(gradient_checkpointing=False, compile_llm_layers=True, compile_frozen_encoders=True,
             cuda_graph_llm_layers=True)
# Monitoring (projects/sa2va_vessel/engine/monitor_hooks.py). The best checkpoint is chosen by
# vessel/best_dice: pooled val Dice at the val-best sweep threshold (the threshold is recorded
# in best_checkpoint.json beside it, and tools/test.py / tools/predict.py use it). Set
# save_best='vessel/global_dice' to select at the fixed operating threshold (0.5) instead, or
# save_best='vessel/gen_best_dice' to select in generation mode (a model that stops writing
# [SEG] then loses; the record's threshold is then gen_best_thr).
default_hooks = dict(
    # validation Dice before the first step: the baseline every run must beat
    validate_before_train=dict(type='ValidateBeforeTrainHook'),
    checkpoint=dict(save_best='vessel/best_dice', rule='greater'),
    best_record=dict(type='BestCheckpointRecordHook'),
    update_norm=dict(type='UpdateNormHook'),
    val_visualization=dict(type='ValVisualizationHook', num_images=4, max_side=512))
