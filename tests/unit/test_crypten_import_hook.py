"""After ``import secure_ml``, a user's own ``import crypten`` gets the patched module."""

from __future__ import annotations

import json
import subprocess
import sys

USER_SCRIPT = """
import json, sys
import secure_ml, secure_ml.cli, secure_ml.api
loaded_early = [m for m in ("crypten", "torch", "onnx") if m in sys.modules]

import crypten
import torch
from secure_ml.compat import load_crypten

crypten.init()
x = crypten.cryptensor(torch.tensor([-6.99998, 2.5]))
print(json.dumps({
    "loaded_early": loaded_early,
    "same_module": load_crypten() is crypten,
    "export_patched": getattr(
        crypten.nn.onnx_converter._export_pytorch_model, "_secure_ml_patched", False),
    "decode_patched": getattr(
        crypten.encoder.FixedPointEncoder.decode, "_secure_ml_patched", False),
    "identity": "Identity" in crypten.nn.onnx_converter.ONNX_TO_CRYPTEN,
    "placeholder_left": "torch.onnx._internal.registration" in sys.modules,
    "opened": x.get_plain_text().tolist(),
}))
"""


def test_plain_import_crypten_after_secure_ml_is_patched_and_lazy():
    out = subprocess.run(
        [sys.executable, "-c", USER_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded_early"] == [], "import secure_ml must not import crypten or torch"
    assert report["same_module"] and report["export_patched"] and report["identity"]
    assert report["decode_patched"] and not report["placeholder_left"]
    # the exact decode: crypten's own gives -8.0 for -6.99998
    opened = report["opened"]
    assert abs(opened[0] + 6.99998) < 1e-3 and abs(opened[1] - 2.5) < 1e-3
