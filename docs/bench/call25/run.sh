#!/usr/bin/env bash
# Device call 25 (not run yet; its b32 stream-sampler row ran in call 26): the shipped config at b8,
# compiled, end to end beside the model step (plain, fast) in one process (issue 11: >= 1.8x plain and
# >= 90% of fast); then the shipped config at 8B (b32, compiled, ZeRO-2; target >= 33 samples/s).
set -uo pipefail
CALL=call25
source docs/bench/device_lib.sh
run 330 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,16,4
run 240 8b_b32_shipped $B --preset sa2va-internvl3-8b --no-model-step --e2e-steps 6,10,3
