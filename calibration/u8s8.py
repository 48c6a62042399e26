"""What an INT8 file computes on an x86 CPU *without* VNNI, in exact float arithmetic (diagnosis, tests).

There, ONNX Runtime's U8S8 convolutions (MLAS: ``vpmaddubsw`` then ``vpmaddwd``) multiply raw uint8
activations by int8 weights and add the products of two neighbouring input channels of one kernel
tap in int16 **with saturation** before the int32 sum; the zero point's share is removed afterwards
(int32, exact). With VNNI (``vpdpbusd``) there is no int16 step. ``emulate_without_vnni`` rewrites
every dense Conv (group 1) of a Q/DQ file whose uint8 input and int8 weight come out of
``DequantizeLinear`` into standard ops that do exactly that:

    Cast(q) -> Pad(zero point) -> grouped Conv (one output per channel pair, tap and output channel)
    -> Clip(-32768, 32767) -> 1x1 Conv of ones (the int32 sum) -> minus zero point x sum(w)
    -> x (s_x * s_w) + bias

Every value is an integer below 2^24, so float32 holds it exactly; ``saturate=False`` gives the
exact int32 result (equal to the Q/DQ graph's up to float rounding). Depthwise and grouped convs are
left as they are (MLAS runs them in another kernel, without the int16 step).

    python -c "from restormer_deploy.calibration.u8s8 import main; main()" FILE.onnx INPUT.npy
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _conv(node, inits, prod, base: str, saturate: bool):
    """The standard ops emulating ``node`` (None when it is not a dense U8S8 conv)."""
    dq_x, dq_w = prod.get(node.input[0]), prod.get(node.input[1])
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if not (dq_x is not None and dq_x.op_type == "DequantizeLinear" and dq_w is not None
            and dq_w.op_type == "DequantizeLinear" and dq_w.input[0] in inits and group == 1):
        return None
    zero = numpy_helper.to_array(inits[dq_x.input[2]])
    w = numpy_helper.to_array(inits[dq_w.input[0]]).astype(np.float32)  # int8 values (O, C, kh, kw)
    n_out, c, kh, kw = w.shape
    if c % 2 or zero.dtype != np.uint8:
        return None  # odd channel counts: MLAS pads K; int8 activations: not the U8S8 path
    zx = int(zero)
    pairs, taps = c // 2, kh * kw
    wg = np.zeros((pairs, taps, n_out, 2, kh, kw), np.float32)
    for t in range(taps):
        dy, dx = divmod(t, kw)
        wg[:, t, :, :, dy, dx] = w[:, :, dy, dx].reshape(n_out, pairs, 2).transpose(1, 0, 2)
    ones = np.zeros((n_out, pairs * taps * n_out, 1, 1), np.float32)
    for j in range(pairs * taps):
        ones[np.arange(n_out), j * n_out + np.arange(n_out), 0, 0] = 1.0
    sx = float(numpy_helper.to_array(inits[dq_x.input[1]]))
    sw = numpy_helper.to_array(inits[dq_w.input[1]]).astype(np.float32).reshape(-1)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in ("group", "pads")}
    pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0, 0, 0, 0])
    bound = 32767.0 if saturate else 1e12
    consts = {
        "zx": np.array(zx, np.float32), "pads": np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64),
        "wg": wg.reshape(pairs * taps * n_out, 2, kh, kw), "lo": np.array(-bound - 1, np.float32),
        "hi": np.array(bound, np.float32), "ones": ones,
        "wsum": (zx * w.sum(axis=(1, 2, 3))).reshape(1, n_out, 1, 1).astype(np.float32),
        "scale": (sx * sw).reshape(1, n_out, 1, 1).astype(np.float32),
        "bshape": np.array([1, -1, 1, 1], np.int64),
    }
    new_inits = [numpy_helper.from_array(v, f"{base}_{k}") for k, v in consts.items()]
    b = lambda k: f"{base}_{k}"  # noqa: E731
    has_bias = len(node.input) > 2 and bool(node.input[2])
    out = node.output[0]
    nodes = [
        helper.make_node("Cast", [dq_x.input[0]], [b("a")], to=onnx.TensorProto.FLOAT),
        helper.make_node("Pad", [b("a"), b("pads"), b("zx")], [b("ap")], mode="constant"),
        helper.make_node("Conv", [b("ap"), b("wg")], [b("pairs")], group=pairs, **attrs),
        helper.make_node("Clip", [b("pairs"), b("lo"), b("hi")], [b("sat")]),
        helper.make_node("Conv", [b("sat"), b("ones")], [b("raw")]),
        helper.make_node("Sub", [b("raw"), b("wsum")], [b("acc")]),
        helper.make_node("Mul", [b("acc"), b("scale")], [b("y") if has_bias else out]),
    ]
    if has_bias:
        nodes += [helper.make_node("Reshape", [node.input[2], b("bshape")], [b("bias")]),
                  helper.make_node("Add", [b("y"), b("bias")], [out])]
    return nodes, new_inits


def emulate_without_vnni(model: onnx.ModelProto, saturate: bool = True) -> tuple[onnx.ModelProto, int]:
    """A copy of the Q/DQ ``model`` computing its dense U8S8 convs as a CPU without VNNI does; the count."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    prod = {o: n for n in out.graph.node for o in n.output}
    nodes, new_inits, count = [], [], 0
    for i, node in enumerate(out.graph.node):
        done = _conv(node, inits, prod, f"u8s8_{i}", saturate) if node.op_type == "Conv" and node.domain in ("", "ai.onnx") else None
        if done is None:
            nodes.append(node)
            continue
        nodes += done[0]
        new_inits += done[1]
        count += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    return out, count


def main() -> None:
    import sys

    from restormer_deploy.export.ort_session import cpu_session
    from restormer_deploy.restormer.metrics import psnr_peak1

    model, x = onnx.load(sys.argv[1]), np.load(sys.argv[2])
    feeds = {model.graph.input[0].name: x}
    vnni = cpu_session(model, threads=1, level="all").run(None, feeds)[0]
    emulated, count = emulate_without_vnni(model)
    without = cpu_session(emulated, threads=1, level="basic").run(None, feeds)[0]
    print(f"{count} U8S8 convs; the output without VNNI against this CPU's: {psnr_peak1(without, vnni):.2f} dB")


if __name__ == "__main__":
    main()
