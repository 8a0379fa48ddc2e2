"""The README's examples run as written (and print what it says they print)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_both_quick_starts() -> None:
    blocks = python_blocks()
    assert any("from tollgate import" in b for b in blocks)
    assert any("from rate_limiter import" in b for b in blocks)


def run_block(block: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    return out.getvalue().strip()


def tollgate_blocks() -> list[str]:
    return [b for b in python_blocks() if "from tollgate import" in b]


def test_tollgate_quick_start_runs() -> None:
    block = tollgate_blocks()[0]
    assert "ModelRateLimiter" in block
    assert run_block(block) == "7500/40000"


def test_more_limits_example_prints_what_it_says() -> None:
    (block,) = [b for b in tollgate_blocks() if "Limit.requests" in b]
    expected = re.search(r"^# (\[.*\])$", block, re.M)
    assert expected is not None
    assert run_block(block) == expected.group(1)


def test_keyed_example_prints_what_it_says() -> None:
    (block,) = [b for b in tollgate_blocks() if "KeyedRateLimiter" in b]
    assert run_block(block).splitlines() == ["served /", "1"]


def test_rate_limiter_quick_start_runs() -> None:
    (block,) = [b for b in python_blocks() if "from rate_limiter import" in b]
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["make_api_call"]() == "API response"  # type: ignore[operator]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        asyncio.run(scope["ask"]())  # type: ignore[arg-type]
    expected = re.search(r"print\(models.get_stats\(\)\)\s+# (.*)", block)
    assert expected is not None
    assert out.getvalue().strip() == expected.group(1).strip()


def test_input_output_example_prints_what_it_says() -> None:
    (block,) = [b for b in tollgate_blocks() if "output_tokens" in b]
    expected = re.search(r"^# (\[.*\])$", block, re.M)
    assert expected is not None
    assert run_block(block) == expected.group(1)


def test_feedback_example_prints_what_it_says() -> None:
    (block,) = [b for b in tollgate_blocks() if "observe(" in b]
    expected = re.findall(r"^# (.*)$", block, re.M)
    assert run_block(block).splitlines() == expected
