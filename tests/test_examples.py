"""The example scripts run as a user runs them and do what they say."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.integration
def test_notebook_study_runs_without_yaml_or_a_folder(tmp_path):
    png = tmp_path / "curves.png"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(EXAMPLES / "notebook_study.py"), str(png)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "baseline" in r.stdout and "tcr_loss" in r.stdout and "units ramp" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no run folder, no YAML


@pytest.mark.integration
def test_compare_recording_example_recovers_the_planted_truth(tmp_path, tiny_run):
    # this checkout first on the path, whichever one the environment installed
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(EXAMPLES / "compare_recording.py"), str(tmp_path / "out"), str(tiny_run)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert re.search(r"build-up units:\s+planted 30%, measured 30% \(95 % CI", r.stdout), r.stdout
    assert (tmp_path / "out" / "compare.nc").is_file() and (tmp_path / "out" / "compare.html").is_file()
    assert "consistent with" in r.stdout
