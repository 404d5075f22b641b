# Every target installs the project into .venv first if it is not there yet,
# so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: train on the generated demo dataset (CPU, from scratch), evaluate the best
# checkpoint on the demo val split, then infer on a few val images.
DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
DEMO_IMAGES := $${SEGNET_DATA:-data}/demo/VOCdevkit/VOC2012/JPEGImages/demo_val_0000*.jpg

demo: $(STAMP)
	$(PY) scripts/train.py experiment=demo hydra.run.dir=$(DEMO_DIR)/train
	$(PY) scripts/evaluate.py data=demo ckpt_path=$(DEMO_DIR)/train/checkpoints/best.ckpt \
		output_dir=$(DEMO_DIR)/eval
	$(PY) scripts/infer.py ckpt_path=$(DEMO_DIR)/train/checkpoints/best.ckpt \
		"input=$(DEMO_IMAGES)" output_dir=$(DEMO_DIR)/infer
	@echo
	@echo "Demo finished. Look at:"
	@echo "  report            $(DEMO_DIR)/eval/report.md (metrics.json beside it)"
	@echo "  confusion matrix  $(DEMO_DIR)/eval/confusion_matrix.png"
	@echo "  overlays          $(DEMO_DIR)/infer/overlays/"
	@echo "  training logs     tensorboard --logdir $(DEMO_DIR)/train"

# Two test processes, whole files to each (module fixtures are built once): the tests pin one
# thread apiece, so this uses both cores of the 2-core machines the suite is sized for.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

benchmark: $(STAMP)
	$(PY) scripts/benchmark.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
