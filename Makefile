# Two entry points: `make demo` and `make test`. Both create .venv on first use and reuse it after.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gasp-installed
# torch/torchvision pair installed first; these wheels lie on local disk on the project machines.
# pip byte-compiles the ~19k installed modules one file at a time; compileall does it on every core instead. The
# .pyc files matter: where PYTHONDONTWRITEBYTECODE is set (as on the project machines) a module without one is
# compiled again by every process that imports it.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# DVC stage commands call `python`: make it the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo data test test-fast lint clean-data dagster params ladder study world-seed mutants gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir --no-compile $(TORCH_SPEC)
	$(PY) -m pip install --quiet --no-cache-dir --no-compile -e ".[dev]"
	@# a few packages ship files that are not Python 3.11 (templates, test data): pip skips them, and so do we
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	@touch $(STAMP)

# Raw data tracked by data.dvc: pulled from a DVC remote when one is configured, otherwise the
# embedded world is generated deterministically (configs/world/demo.yaml) and `dvc add`ed.
data: setup
	$(PY) -m gasp_core.sim.embedded

demo: data
	@$(PY) -m compileall -q gasp_core stages > /dev/null  # 28 stage processes import these (see setup)
	$(PY) -m dvc repro
	@echo; sed -n '/^## Main metric/,/^## Secondary/p' reports/README.md | head -n -1
	@echo "Full report with figures: reports/README.md"

test: setup
	$(PY) -m pytest

# The dev loop: every test but the whole-DAG ones (marker `dag`: tests/test_smoke_dag.py). `make test` runs them all.
test-fast: setup
	$(PY) -m pytest -m "not dag"

# ruff (pyproject.toml [tool.ruff]): lint and formatting of everything we write; mypy ([tool.mypy]) on the typed
# modules. CI runs it before the tests.
LINT_PATHS := gasp_core stages orchestration tests benchmarks
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# The Dagster UI over the same DAG (orchestration/definitions.py reads dvc.yaml); DAGSTER_HOME outside the repo.
DAGSTER_HOME ?= $(HOME)/.gasp-dagster
DAGSTER_PORT ?= 3000
# The daemon runs in the background for the sensor that records dvc.lock's state; Ctrl-C stops both (the trap).
dagster: setup
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp orchestration/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	export DAGSTER_HOME=$(DAGSTER_HOME); \
	  $(PY) -m orchestration.definitions sync; \
	  $(VENV)/bin/dagster-daemon run -m orchestration.definitions & daemon=$$!; \
	  trap 'kill $$daemon 2>/dev/null; wait $$daemon 2>/dev/null' EXIT INT TERM; \
	  $(VENV)/bin/dagster-webserver -h 127.0.0.1 -p $(DAGSTER_PORT) -m orchestration.definitions

# params.yaml is the Hydra composition of configs/ (what `dvc exp run` composes); rewrite it after editing configs/.
params: setup
	$(PY) -m gasp_core.params

clean-data:
	rm -rf data/raw

# The paper's variant ladder and GASP's ablations on the demo world, 2 pre-training seeds each, in its own project
# (LADDER_DIR, outside this checkout's DVC state); its report is copied to studies/ladder/ (committed).
LADDER_DIR ?= /tmp/gasp-ladder
LADDER_VARIANTS ?= [scratch,uno,uno_enhanced,gasp_no_dino,gasp_no_ego,gasp]
ladder: setup
	rm -rf $(LADDER_DIR)
	$(PY) -m gasp_core.apps.presets demo $(LADDER_DIR) 'pretrain.variants=$(LADDER_VARIANTS)' 'finetune.inits=$(LADDER_VARIANTS)' 'pretrain.seeds=[0,1]'
	cd $(LADDER_DIR) && python -m dvc repro
	rm -rf studies/ladder && mkdir -p studies && cp -r $(LADDER_DIR)/reports studies/ladder && cp $(LADDER_DIR)/params.yaml studies/ladder/

# The study (configs/preset/study.yaml, world configs/world/study.yaml): the paper's comparison under the papers'
# protocol, in its own project (STUDY_DIR), which runs on its own copy of gasp_core (PYTHONPATH) so edits here cannot
# reach a running study; its report, metrics, curves, composed params, dvc.lock, log, wall time and commit go to
# studies/$(STUDY_NAME)/ (committed). STUDY_OVERRIDES (Hydra overrides) run one part of it, e.g. a subset of tasks.
STUDY_DIR ?= /tmp/gasp-study
STUDY_NAME ?= study
STUDY_OVERRIDES ?=
study: setup
	rm -rf $(STUDY_DIR)
	set -o pipefail; start=$$(date +%s); commit=$$(git rev-parse HEAD); \
	  $(PY) -m gasp_core.apps.presets study $(STUDY_DIR) $(STUDY_OVERRIDES) && echo $$commit > $(STUDY_DIR)/commit.txt && \
	  echo "world: $$(( $$(date +%s) - start )) s" > $(STUDY_DIR)/study_wall_s.txt && \
	  cd $(STUDY_DIR) && PYTHONPATH=$(abspath $(STUDY_DIR)) python -m dvc repro 2>&1 | tee repro.log && \
	  echo "total (world + dvc repro): $$(( $$(date +%s) - start )) s" >> study_wall_s.txt
	rm -rf studies/$(STUDY_NAME) && mkdir -p studies/$(STUDY_NAME)
	cp -r $(STUDY_DIR)/reports/. studies/$(STUDY_NAME)/ && cp -r $(STUDY_DIR)/metrics studies/$(STUDY_NAME)/metrics
	cp -r $(STUDY_DIR)/dvclive studies/$(STUDY_NAME)/dvclive
	cp $(STUDY_DIR)/params.yaml $(STUDY_DIR)/study_wall_s.txt $(STUDY_DIR)/commit.txt $(STUDY_DIR)/dvc.lock \
	  $(STUDY_DIR)/repro.log studies/$(STUDY_NAME)/

# Robustness: the demo's comparison on another world seed (another town and traffic, same sizes; splits moved by
# position), in its own project; its report goes to studies/world_seed_<N>/ and benchmarks/compare_verdicts.py lists
# the verdicts that hold on every world and scale: the demo (reports/, world seed 0), this run, and the study.
WORLD_SEED ?= 1
SEED_DIR ?= /tmp/gasp-world-seed-$(WORLD_SEED)
world-seed: setup
	rm -rf $(SEED_DIR)
	set -o pipefail; start=$$(date +%s); commit=$$(git rev-parse HEAD); \
	  $(PY) -m gasp_core.apps.presets demo $(SEED_DIR) --world-seed $(WORLD_SEED) && echo $$commit > $(SEED_DIR)/commit.txt && \
	  cd $(SEED_DIR) && PYTHONPATH=$(abspath $(SEED_DIR)) python -m dvc repro 2>&1 | tee repro.log && \
	  echo "total (world + dvc repro): $$(( $$(date +%s) - start )) s" > wall_s.txt
	rm -rf studies/world_seed_$(WORLD_SEED) && mkdir -p studies/world_seed_$(WORLD_SEED)
	cp -r $(SEED_DIR)/reports/. studies/world_seed_$(WORLD_SEED)/ && cp -r $(SEED_DIR)/metrics studies/world_seed_$(WORLD_SEED)/metrics
	cp $(SEED_DIR)/params.yaml $(SEED_DIR)/wall_s.txt $(SEED_DIR)/commit.txt $(SEED_DIR)/repro.log studies/world_seed_$(WORLD_SEED)/
	$(PY) benchmarks/compare_verdicts.py reports studies/world_seed_$(WORLD_SEED) studies/study_frozen_probe \
	  --labels "demo, world seed 0" "demo, world seed $(WORLD_SEED)" "study, world seed 0" \
	  | tee studies/world_seed_$(WORLD_SEED)/verdicts.md

# Mutation score of metrics, statistics, task labels, sample windows, occupancy and ego labels (cosmic-ray, in a
# scratch copy of the checkout; not part of `make test`): MODULES="metrics stats" narrows it.
MODULES ?=
mutants: setup
	$(PY) -m pip install --quiet -e ".[mutation]"
	$(PY) benchmarks/mutation_score.py $(MODULES)

# The CUDA path on a GPU machine (benchmarks/gpu_check.py): bf16 + DDP pre-training steps on every visible GPU, the
# teacher's feature extraction, the step's FLOP rate against the measured matmul peak. Exits 2 without a GPU.
gpu-check: setup
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$$(nvidia-smi -L 2>/dev/null | grep -c GPU | sed 's/^0$$/1/') \
	  benchmarks/gpu_check.py
