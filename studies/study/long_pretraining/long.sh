#!/bin/bash
# Longer pre-training (1500 steps instead of 600) for UnO and GASP, in a copy of the study project sharing its world,
# store, teacher, targets and labels: forecasting and 4D semantic occupancy fine-tuned, 4D occupancy zero-shot.
set -u
S=/tmp/gasp-study
L=/tmp/gasp-study-long
PY=/work/main/.venv/bin/python
export PATH=/work/main/.venv/bin:$PATH
t0=$(date +%s)
echo "long start $(date -u +%FT%TZ)"
rm -rf $L; mkdir -p $L
cd $S
for x in $(ls -A | grep -v '^\.dvc$' | grep -v '^data$' | grep -v '^models$' | grep -v '^dvclive$' | grep -v '^metrics$' | grep -v '^reports$'); do cp -a "$x" $L/; done
mkdir -p $L/.dvc $L/data $L/models $L/metrics && cp -a .dvc/config $L/.dvc/ 2>/dev/null
for d in raw store targets tasks; do cp -al data/$d $L/data/$d; done
cp -al models/teacher $L/models/teacher
for f in ingest.json teacher.json occupancy_labels.json task_labels.json; do cp metrics/$f $L/metrics/; done
cp -r metrics/dino_targets $L/metrics/
cd $L
$PY -m dvc cache dir $S/.dvc/cache
export PYTHONPATH=$L
$PY - <<'PYEOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["pretrain"]["variants"] = ["uno", "gasp"]
p["pretrain"]["train"]["steps"] = 1500
p["finetune"]["inits"] = ["uno", "gasp"]
p["finetune"]["tasks"] = ["forecast", "occupancy", "semantic_occupancy"]
p["finetune"]["zero_shot_only"] = ["occupancy"]
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PYEOF
$PY -m dvc status 2>&1 | grep -c "changed\|modified" ; $PY -m dvc status 2>&1 | grep "^[a-z_@-]*:" | head -40
[ -n "${DRY:-}" ] && exit 0
$PY -m dvc repro report > repro_long.log 2>&1; echo "long repro rc $? $(date -u +%FT%TZ)"
t1=$(date +%s); echo $((t1-t0)) > long_wall_s.txt
echo "long done $(date -u +%FT%TZ)"
