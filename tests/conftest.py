import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def random_orthogonal(rng, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def paired_data(rng, n=500, d=16, noise=0.05, shift=0.0):
    """x and y = x Q + noise (+ shift), with the true Q."""
    q = random_orthogonal(rng, d)
    x = rng.normal(size=(n, d)) + shift
    y = x @ q + noise * rng.normal(size=(n, d)) - shift
    return x, y, q


def pytest_collection_modifyitems(items):
    # Under `make mutate` (mutmut sets MUTANT_UNDER_TEST) run the focused reference tests first:
    # most mutants die in one of them, and mutmut's pytest -x then stops at once. The order of
    # `make test` is untouched.
    if os.environ.get("MUTANT_UNDER_TEST"):
        items.sort(key=lambda item: not item.nodeid.startswith("tests/test_mutation_"))
