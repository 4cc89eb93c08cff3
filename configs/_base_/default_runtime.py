# Runtime shared by every training config: hooks, logging, TensorBoard, seed, runner choice.
# The project's classes live in its own registries (projects/sa2va_vessel/registry.py), which
# import them when a name is built and fall back to mmengine's for mmengine's classes.
default_scope = 'sa2va_vessel'

# 'deepspeed_zero2' -> configs/deepspeed/deepspeed_zero2.json (FlexibleRunner + ZeRO-2);
# 'none' -> plain Runner. It goes with optim_wrapper.type (_base_/schedules/lora_adamw.py);
# tools/train.py --deepspeed sets both.
deepspeed = 'deepspeed_zero2'
# Used on GPU only (DeepSpeed bf16 section or AmpOptimWrapper dtype); CPU trains in fp32.
mixed_precision = 'bf16'
# The plain runner in bf16: bf16 trainables with fp32 masters (True) or fp32 trainables under
# autocast (False); engine/master_weights.py.
master_weights = False

log_interval = 10
default_hooks = dict(
    # mmengine's RuntimeInfoHook, but the loss tensors are read off the GPU once per log interval
    # instead of synchronising every iteration (engine/runtime_info.py)
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),  # feeds the ETA in the log line
    logger=dict(type='LoggerHook', interval=log_interval, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # with save_last the final iteration is always saved; retention is checkpoint_keep_last below
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=-1,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # A dict entry (not custom_hooks) so child configs keep it when they add hooks;
    # `default_hooks = dict(gradient_guard=None)` switches it off.
    # lagged=None: on a GPU with the fused AdamW, each step's check is read one update late and a
    # bad step is skipped on the device, so the host never waits for the backward (engine/hooks.py;
    # +18% samples/s at micro-batch 8, docs/bench/call36); elsewhere the check is synchronous.
    gradient_guard=dict(type='GradientFlowGuardHook', interval=log_interval, lagged=None),
)

# Keep the last two iter_<n>.pth. The runner deletes an old one only after a newer one is complete
# (mmengine's CheckpointHook would delete first, so its max_keep_ckpts stays -1).
checkpoint_keep_last = 2

env_cfg = dict(
    cudnn_benchmark=False,
    # Loader workers start from a fork server, not by forking the trainer: by the time the loaders
    # start, the trainer holds a CUDA context, NCCL/compile/TensorBoard threads and a Rust tokenizer
    # thread pool, and forking a process with live threads can leave a child with a lock held by a
    # thread that does not exist there (the "segmentation fault in worker" starts). The server is a
    # clean process that imports the data code once (engine/runner.py preloads it), so 12 workers
    # still start in seconds.
    mp_cfg=dict(mp_start_method='forkserver', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # the runner switches to gloo without CUDA
)

visualizer = dict(type='Visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
# grad_norm/<group> is computed once per log interval, so log its current value rather than a
# window mean (mmengine's default mean_pattern also matches grad_norm).
log_processor = dict(type='LogProcessor', window_size=log_interval, by_epoch=False,
                     mean_pattern=r'.*(loss|time|data_time).*')
log_level = 'INFO'

load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
