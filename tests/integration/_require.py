"""Skip an integration test locally when its backend is missing, fail it in CI.

CI (`CI=true`, set by .ci/run and every hosted runner) installs the backends, so
a missing one there means a broken environment, not a reason to go green.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)", pytrace=False)
    pytest.skip(reason)


def require_binaries(*names: str) -> dict[str, str]:
    """Paths of the named executables, or skip/fail naming the missing ones."""
    found = {name: shutil.which(name) for name in names}
    absent = [name for name, path in found.items() if path is None]
    if absent:
        missing(f"needs {', '.join(absent)} on PATH")
    return {name: path for name, path in found.items() if path is not None}
