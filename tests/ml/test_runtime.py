"""Job-process settings: CPU priority."""

import os
import subprocess
import sys


def test_lower_priority_adds_to_the_niceness_of_its_process() -> None:
    code = "from app.ml.runtime import lower_priority; print(lower_priority(5), lower_priority(0))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    ).stdout.split()
    expected = min(19, os.nice(0) + 5)
    assert out == [str(expected), str(expected)]
    assert os.nice(0) == expected - 5 or expected == 19  # the test process is untouched
