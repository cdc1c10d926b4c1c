#!/bin/bash
# Second pass of the 1,500-step copy: GASP without rotation added (pretrain.variants and finetune.inits).
set -u
cd /tmp/gasp-study-long
export PYTHONPATH=/tmp/gasp-study-long
export PATH=/work/main/.venv/bin:$PATH
t0=$(date +%s)
python -m dvc repro report > repro_long2.log 2>&1; echo "long2 repro rc $? $(date -u +%FT%TZ)"
echo $(( $(date +%s) - t0 )) > long2_wall_s.txt
