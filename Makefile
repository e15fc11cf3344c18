# artlens: `make train embed`, then `make dashboard`. `make test` runs every test, `make test-fast` the quick tier.
# Every target runs the `artlens` command (artlens/cli.py), installed into .venv by `pip install -e .`.
VENV   := .venv
PY     := $(VENV)/bin/python
ARTLENS := $(VENV)/bin/artlens
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
BENCH_STAMP := $(VENV)/.bench-$(shell sha1sum requirements-bench.txt | cut -c1-12)
RAY_STAMP := $(VENV)/.ray-$(shell sha1sum requirements-ray.txt | cut -c1-12)
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed-$(shell sha1sum requirements-labelstudio.txt | cut -c1-12)
FO_VENV := .venv-fiftyone
FO_STAMP := $(FO_VENV)/.installed-$(shell sha1sum requirements-fiftyone.txt | cut -c1-12)
DATA   ?= ../shared/data/wikiart-mini
PORT   ?= 8501
ARGS   ?=

# glibc's allocator returns conv buffers to the OS after every batch; keeping them cuts CPU
# inference time ~3x on 2 cores (measured: Lite0 16 -> 54 img/s). Exported for every target.
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000
export PYTHONUNBUFFERED := 1

.PHONY: venv ray labelstudio fiftyone train embed dashboard test test-fast bench bench-noise bench-audit bench-loop bench-ablation clean

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	# the project itself, editable: its dependencies are the pins just installed
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

train: $(STAMP)
	$(ARTLENS) train --data $(DATA) $(ARGS)

embed: $(STAMP)
	$(ARTLENS) embed $(ARGS)

dashboard: $(STAMP)
	$(ARTLENS) dashboard --port $(PORT) $(ARGS)

# Everything, including real training runs, the dashboard in AppTest and in Chromium, Ray.
test: $(STAMP) $(BENCH_STAMP) $(RAY_STAMP) $(LS_STAMP)
	$(PY) -m pytest -q tests $(ARGS)

# The quick tier: pure-numpy maths, the store, data loading and CLI errors (no training run, no browser).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(ARGS)

bench: $(STAMP)
	$(ARTLENS) bench run $(ARGS)

# The benchmark-only extra (cleanlab, the peer the noise benchmark compares against).
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	rm -f $(VENV)/.bench-*
	touch $@

# The Ray extra (`--engine ray`): tested on a local instance by make test; `make ray` installs it alone.
ray: $(RAY_STAMP)
$(RAY_STAMP): requirements-ray.txt $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-ray.txt
	rm -f $(VENV)/.ray-*
	touch $@

# A tool with pins of its own in its own environment: $(call side_venv,DIR) in the recipe of DIR's
# stamp, whose first prerequisite is the requirements file; the stamp names the file's hash.
define side_venv
test -x $(1)/bin/python || python3 -m venv $(1)
$(1)/bin/python -m pip install -q --disable-pip-version-check -r $<
rm -f $(1)/.installed-*
touch $@
endef

# The Label Studio SDK in its own environment (it pins another numpy): tests check the --label-studio
# round trip against it (bench/labelstudio_check.py).
labelstudio: $(LS_STAMP)
$(LS_STAMP): requirements-labelstudio.txt
	$(call side_venv,$(LS_VENV))

# FiftyOne (optional, about 1 GB) in its own .venv-fiftyone: tests load `artlens export --fiftyone`
# with FiftyOne's importer when it is there (bench/fiftyone_check.py); `make test` does not need it.
fiftyone: $(FO_STAMP)
$(FO_STAMP): requirements-fiftyone.txt
	$(call side_venv,$(FO_VENV))

bench-noise: $(STAMP) $(BENCH_STAMP)
	$(ARTLENS) bench noise $(ARGS)

# The store's rankings against a blind panel's verdicts on real labels (../shared/data/wikiart-mini/audit.csv).
bench-audit: $(STAMP)
	$(ARTLENS) bench audit $(ARGS)

# One round of the review loop on the noisy copy: perfect review of the top 100, --apply-tags, re-embed.
bench-loop: $(STAMP)
	$(ARTLENS) bench loop $(ARGS)

# The classifier ablation: each change on/off, one seed, real `artlens train` runs.
bench-ablation: $(STAMP)
	$(ARTLENS) bench ablation $(ARGS)

clean:
	rm -rf runs cache artlens.duckdb artlens.faiss bench/noise
