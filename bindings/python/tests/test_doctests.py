"""The examples in the public docstrings run and print what they say."""

from __future__ import annotations

import doctest

import pytest

import tollgate
import tollgate._keyed
import tollgate._model
import tollgate._rps
import tollgate.errors
from rate_limiter import model_rate_limiter


@pytest.mark.parametrize(
    "module",
    [tollgate._rps, tollgate._keyed, tollgate._model, tollgate.errors, model_rate_limiter],
)
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module is not model_rate_limiter:
        assert result.attempted > 0
