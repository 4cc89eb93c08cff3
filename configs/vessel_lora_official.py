# The official Sa2VA fine-tune recipe (bytedance/Sa2VA projects/sa2va/configs/sa2va_finetune.py) as
# a comparison arm of configs/vessel_lora.py, on the same data, model and validation. Every
# difference of the default from this file, and why, is in docs/RECIPE.md.
#   SA2VA_MODEL_PATH=/path/to/Sa2VA-InternVL3-2B VESSEL_DATA_ROOT=/path/to/prepared \
#   tools/dist_train.sh configs/vessel_lora_official.py 8
_base_ = ['./vessel_lora.py']

# Global batch 256 at lr 4e-5: 2 per GPU x 16 accumulation x 8 GPUs in the official; the runner
# derives the accumulation from the world size (e.g. 2 x 32 x 4 GPUs), so 256 holds anywhere.
global_batch_size = 256
train_dataloader = dict(
    batch_size=2,
    # official: DirectResize to 1024 of the whole image, no augmentation, no crop
    dataset=dict(transform=None))
optim_wrapper = dict(type='DeepSpeedOptimWrapper',
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
                     clip_grad=dict(max_norm=1.0))
# official warm-up: LinearLR from start_factor 1e-5 over the first 5% of the run, then cosine to 0
# (engine.schedule.warmup_cosine_schedule(2000, warmup_ratio=0.05, warmup_start_factor=1e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=2000, eta_min_ratio=0.0),
]

model = dict(
    # official loss_sample_points=True: BCE (weight 2.0) + Dice (0.5, eps 1) on 12,544 points of the
    # 256x256 decoder logits, 75% the most uncertain (-|logit|) of 3x oversampled candidates
    mask_loss='points',
    point_loss=dict(num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75),
    # official LoRA r128/alpha256/dropout 0.05 with modules_to_save=['embed_tokens', 'lm_head']:
    # the whole matrices train, not only the [SEG] rows; projector, text_hidden_fcs and the SAM2
    # mask decoder train as in the official (frozen_sam2_decoder=False; mlp1 is left trainable)
    lora=dict(r=128, alpha=256, dropout=0.05),
    trainable=dict(lora=True, token_rows=False, embeddings=True, text_hidden_fcs=True,
                   mask_decoder=True, projector=True),
    light_token_rows=False,
    gradient_checkpointing=True,
)
