"""Export-time graph rewrites (export/optimize.py) and the ONNX Runtime session helper
(export/ort_session.py): the rewritten graph has the intended shape and computes the same thing."""

import numpy as np
import onnx
import pytest
import torch

from restormer_deploy.export.fp16 import is_island
from restormer_deploy.export.functions import attach_functions
from restormer_deploy.export.stages import strip_trace_metadata, trace
from restormer_deploy.export.optimize import CHANNEL_BLOCK, optimize_for_inference
from restormer_deploy.export.ort_session import make_session
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.restormer_arch import Restormer

# Hidden width int(16 * 2.66) = 42: not a multiple of the NCHWc block, so the GDFN gets padded.
SMALL = dict(dim=16, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))


@pytest.fixture(scope="module", params=["WithBias", "BiasFree"])
def traced(request):
    ln = request.param
    torch.manual_seed(0)
    net = Restormer(**SMALL, LayerNorm_type=ln, bias=ln == "BiasFree").eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".norm" in name or name.endswith("temperature"):
                p.add_(0.3 * torch.randn_like(p))
    spec = ModelSpec("small", "restormer", "denoise", {"LayerNorm_type": ln}, pad_multiple=8)
    model = trace(net, spec)
    strip_trace_metadata(model)
    return ln, net, model


def test_rewrites_and_metadata(traced):
    ln, net, model = traced
    optimized, stats = optimize_for_inference(model)
    n_norms = 2 * sum(1 for m in net.modules() if m.__class__.__name__ == "TransformerBlock")
    assert stats["layer_norm"] == n_norms
    assert stats["split_chunks"] == n_norms and stats["padded_ffn"] == n_norms // 2
    ops = [n.op_type for n in optimized.graph.node]
    assert ops.count("LayerNormalization") == n_norms
    assert "Split" not in ops and "ReduceMean" not in ops and "Sqrt" not in ops
    for node in optimized.graph.node:
        if node.op_type == "LayerNormalization" or node.name.startswith("layernorm_"):
            assert is_island(node), node.name  # the FP16 pass keeps it in FP32
    inits = {i.name: i for i in optimized.graph.initializer}
    for node in optimized.graph.node:
        if node.op_type == "Gelu":
            producer = next(n for n in optimized.graph.node if node.input[0] in n.output)
            assert inits[producer.input[1]].dims[0] % CHANNEL_BLOCK == 0


@pytest.mark.parametrize("layout", [False, True])
def test_optimized_session_matches_pytorch(traced, layout):
    ln, net, model = traced
    optimized, _ = optimize_for_inference(model)
    optimized = attach_functions(optimized)
    session = make_session(optimized, threads=2, layout=layout)
    x = np.random.default_rng(0).random((1, 3, 32, 40), dtype=np.float32)
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4


def test_layout_passes_apply(traced, tmp_path):
    ln, net, model = traced
    optimized, _ = optimize_for_inference(model)
    kept = tmp_path / "ort.onnx"
    make_session(attach_functions(optimized), threads=2, layout=True, optimized_model_filepath=kept)
    ort_model = onnx.load(kept)
    nhwc_reorders = [n for n in ort_model.graph.node if n.op_type == "ReorderInput"
                     and any(a.name == "channels_last" and a.i == 1 for a in n.attribute)]
    if not any(n.domain == "com.microsoft.nchwc" for n in ort_model.graph.node):
        pytest.skip("no NCHWc layout on this CPU")
    assert len(nhwc_reorders) >= len([n for n in ort_model.graph.node if n.op_type == "LayerNormalization"])
