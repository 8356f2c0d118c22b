"""training/gpu_check.py in its CPU smoke mode: every check runs and the report holds measured numbers."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / 'training' / 'gpu_check.py'


def test_gpu_check_runs_on_cpu_in_quick_mode(tmp_path):
    out = tmp_path / 'gpu_check.json'
    run = subprocess.run([sys.executable, str(SCRIPT), '--device', 'cpu', '--quick', '--out', str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report['parameters'] == 18_034_478 and report['quick']
    training, planning, encoding = report['training'], report['planning'], report['encoding']
    assert training['steps_per_s'] > 0 and training['gflop_per_step'] > 0 and training['mfu'] is None
    assert planning['ours_ms_p50'] > 0 and planning['official_ms'] > 0 and planning['official_over_ours'] > 0
    assert encoding['frames_per_s'] > 0 and encoding['image_size'] == 224
    assert 'ratio' in run.stdout and 'MFU' in run.stdout
