"""Tests of repro._threads: worker processes that return every result and report errors."""

import math

import pytest

from repro._threads import check_workers, default_workers, parallel_map


def test_parallel_map_yields_every_result_and_raises_a_jobs_error():
    assert dict(parallel_map(math.sqrt, [4.0, 9.0, 16.0], 2)) == {0: 2.0, 1: 3.0, 2: 4.0}
    assert list(parallel_map(math.sqrt, [4.0, 9.0], 1)) == [(0, 2.0), (1, 3.0)]  # here, in order
    with pytest.raises(ValueError, match="math domain error"):
        dict(parallel_map(math.sqrt, [4.0, -1.0], 2))


def test_check_workers():
    assert check_workers(None) == default_workers() >= 1
    assert check_workers(3) == 3
    assert check_workers(3, "meta") == 1  # off the CPU: in this process
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be None or an int >= 1"):
            check_workers(bad)


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path):
    """Spawned workers import the main script again; without the guard they cannot start."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("import math\nfrom repro._threads import parallel_map\n"
                      "print(dict(parallel_map(math.sqrt, [1.0, 4.0], 2)))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and 'if __name__ == "__main__":' in done.stderr
    script.write_text("import math\nfrom repro._threads import parallel_map\n"
                      "if __name__ == '__main__':\n    print(dict(parallel_map(math.sqrt, [1.0, 4.0], 2)))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "{0: 1.0, 1: 2.0}"
