# Set-up, checks and demo. Everything runs inside $(VENV), created on first use; the
# dependency install is redone only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: setup test test-fast lint typecheck check demo clean

$(DEPS_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.deps-*
	@touch $@

# (Re)point the editable install at this checkout when the venv is shared between clones.
setup: $(DEPS_STAMP)
	@$(BIN)/python -c "import dinokit, pathlib, sys; \
	sys.exit(pathlib.Path(dinokit.__file__).resolve().parent != pathlib.Path('src/dinokit').resolve())" \
	2>/dev/null || $(BIN)/python -m pip install --quiet --no-deps -e .

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

# The main job on built-in sample data: draw a labelled folder of shapes, DINO-train the tiny
# test ViT on it for a 3-minute budget with the default recipe (labels unused) and watch the
# teacher's kNN accuracy on held-out images; then export the teacher, embed every image with
# it, show the neighbours of a few and draw the map of the embeddings.
DEMO ?= demo
demo: setup
	rm -rf $(DEMO)
	$(BIN)/dinokit sample-data $(DEMO)/images
	$(BIN)/dinokit train $(DEMO)/images/train --out $(DEMO)/run --model vit_test --weights none \
		--budget 3m --eval-train $(DEMO)/images/train --eval-val $(DEMO)/images/val \
		--eval-every 5 --no-progress
	$(BIN)/dinokit export $(DEMO)/run --out $(DEMO)/model.safetensors
	$(BIN)/dinokit embed $(DEMO)/images/train $(DEMO)/images/val --model $(DEMO)/model.safetensors \
		--out $(DEMO)/embeddings.parquet --workers 1
	$(BIN)/dinokit search $(DEMO)/embeddings.parquet -k 5 --query-path \
		$(DEMO)/images/val/checker/0000.jpg $(DEMO)/images/val/rings/0000.jpg \
		$(DEMO)/images/val/hstripes/0000.jpg
	$(BIN)/dinokit map $(DEMO)/embeddings.parquet --out $(DEMO)/map.png --thumbnails 40
	@echo
	@$(BIN)/python -c "import json; print(json.load(open('$(DEMO)/run/summary.json'))['knn']['line'])"
	@echo "The map of every image's embedding, coloured by its folder: $(DEMO)/map.png"
	@echo
	@echo "Next, on your own images (a folder, recursive; subfolders name the labels):"
	@echo "  $(BIN)/dinokit train PHOTOS/ --model dino_vits16 --out runs/mine"
	@echo "  $(BIN)/dinokit embed PHOTOS/ --model runs/mine --out photos.parquet"
	@echo "  $(BIN)/dinokit search photos.parquet --query some_photo.jpg"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
