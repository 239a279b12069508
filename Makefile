# Set-up from bare python3: `make demo`, then `make test`. `make bench` is separate.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
DEMO   := demo-out

.PHONY: install demo test bench mutate clean

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
	rm -rf $(VENV) $(DEMO) .pytest_cache mutants
