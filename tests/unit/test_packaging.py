"""The wheel ships only secure_ml; importing it stays light and explains a missing crypten."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from testkit import REPO


@pytest.mark.timeout(300)
def test_wheel_contains_only_the_secure_ml_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, timeout=280,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("secure_ml-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert tops == {"secure_ml", dist_info}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_secure_ml_imports_neither_torch_nor_crypten():
    out = _python("import sys, secure_ml; print('torch' in sys.modules, 'crypten' in sys.modules)")
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_missing_crypten_error_gives_the_install_command():
    hide_crypten = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'crypten': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from secure_ml.compat import load_crypten\n"
        "load_crypten()\n"
    )
    out = _python(hide_crypten)
    assert out.returncode != 0
    assert "pip install --no-deps crypten==0.4.1" in out.stderr
