"""Small exported artefacts shared by the runtime / CLI tests (built once per test process)."""

import functools
import tempfile
from pathlib import Path

import torch


@functools.lru_cache(maxsize=None)
def small_artifacts() -> dict:
    """A small random Converse-DnCNN whose outputs sit inside [0, 1] (so that clamping does not hide
    differences), its checkpoint, an FP32 ONNX export and an FP16-IO export."""
    from export.onnx_export import ExportOptions, export
    from restormer.checkpoints import save_checkpoint
    from test_export import _small_checkpoint

    root = Path(tempfile.mkdtemp(prefix="rt_small_"))
    _, net, spec = _small_checkpoint(root, "converse-dncnn")
    with torch.no_grad():
        x = torch.rand(1, 1, 32, 32)
        net.m_tail[0].bias += 0.5 - net(x).mean()
    ckpt = save_checkpoint(root / "dncnn.safetensors", net, {"model": spec.to_json()})
    export(str(ckpt), root / "m.onnx", options=ExportOptions(verify_size=24))
    export(str(ckpt), root / "m16.onnx", options=ExportOptions(precision="fp16", io_fp16=True, verify_size=24))
    # a second, different model with the same architecture (for failing parity)
    torch.manual_seed(1)
    other = type(net)(**spec.config).eval()
    with torch.no_grad():
        other.m_tail[0].bias += 0.5 - other(x).mean()
    other_ckpt = save_checkpoint(root / "other.safetensors", other, {"model": spec.to_json()})
    return {"root": root, "ckpt": ckpt, "net": net, "spec": spec, "fp32": root / "m.onnx", "fp16": root / "m16.onnx",
            "other": other_ckpt}
