"""The architecture survey: every spandrel architecture through the verified path (docs/ARCHITECTURES.md).

For each architecture in spandrel's registry (and spandrel_extra_arches' when installed): build it
with small hyperparameters (``SMALL``, adapted from spandrel's own tests) and seeded random weights,
save the state dict as safetensors, load it back through detection (``restore-*``'s resolver), export
FP32 (checked against PyTorch at every size of ``check_sizes``, batches 1 and 2) and FP16 (measured
FP32 islands, checked under emulated FP16 arithmetic), lint the TensorRT-target FP32 file, and time
ONNX Runtime against PyTorch. One row per architecture; a failure row says which step and why.

    python -m restormer_deploy.cli.zoo_survey --out docs/ARCHITECTURES.md [--only SwinIR,NAFNet]
"""

from __future__ import annotations

import importlib
import json
import math
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer

# Small hyperparameters per architecture: (module, class, kwargs). Window models keep their window.
SMALL: dict[str, tuple[str, str, dict]] = {
    "Compact": ("spandrel.architectures.Compact", "SRVGGNetCompact", dict(num_feat=16, num_conv=4, upscale=4)),
    "SwiftSRGAN": ("spandrel.architectures.SwiftSRGAN", "Generator", dict(num_channels=16, num_blocks=2, upscale_factor=2)),
    "HAT": ("spandrel.architectures.HAT", "HAT", dict(embed_dim=24, depths=(2,), num_heads=(2,), window_size=8, upscale=2, squeeze_factor=8, num_feat=16, compress_ratio=3)),
    "GRL": ("spandrel.architectures.GRL", "GRL", dict(embed_dim=24, depths=[1, 1], num_heads_window=[2, 2], num_heads_stripe=[2, 2], upscale=2, upsampler="pixelshuffle", window_size=8, stripe_size=[8, 8])),
    "Swin2SR": ("spandrel.architectures.Swin2SR", "Swin2SR", dict(embed_dim=24, depths=[2], num_heads=[2], window_size=8, upscale=2, upsampler="pixelshuffle")),
    "SwinIR": ("spandrel.architectures.SwinIR", "SwinIR", dict(embed_dim=24, depths=[2], num_heads=[2], window_size=8, upscale=2, upsampler="pixelshuffle")),
    "GFPGAN": ("spandrel.architectures.GFPGAN", "GFPGANv1Clean", dict()),
    "RestoreFormer": ("spandrel.architectures.RestoreFormer", "RestoreFormer", dict(n_embed=64, embed_dim=32, ch=32, num_res_blocks=1, z_channels=32)),
    "LaMa": ("spandrel.architectures.LaMa", "LaMa", dict()),
    "OmniSR": ("spandrel.architectures.OmniSR", "OmniSR", dict(num_feat=16, block_num=1, window_size=8, res_num=1, up_scale=2)),
    "SCUNet": ("spandrel.architectures.SCUNet", "SCUNet", dict(config=[1, 1, 1, 1, 1, 1, 1], dim=16)),
    "FBCNN": ("spandrel.architectures.FBCNN", "FBCNN", dict(nb=2)),  # its quality-factor head is 512 wide
    "Uformer": ("spandrel.architectures.Uformer", "Uformer", dict(img_size=128, embed_dim=8, depths=[1, 1, 1, 1, 1, 1, 1, 1, 1], num_heads=[1, 1, 1, 1, 1, 1, 1, 1, 1], win_size=8)),
    "RGT": ("spandrel.architectures.RGT", "RGT", dict(embed_dim=24, depth=[1], num_heads=[2], upscale=2, split_size=[8, 8])),
    "DAT": ("spandrel.architectures.DAT", "DAT", dict(embed_dim=24, depth=[1], num_heads=[2], upscale=2, split_size=[4, 8])),
    "CRAFT": ("spandrel.architectures.CRAFT", "CRAFT", dict(embed_dim=24, depths=[1], num_heads=[2], upscale=2)),
    "KBNet": ("spandrel.architectures.KBNet", "KBNet_s", dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])),
    "DITN": ("spandrel.architectures.DITN", "DITN_Real", dict(dim=24, ITL_blocks=1, SAL_blocks=1, UFONE_blocks=1, upscale=2)),
    "MMRealSR": ("spandrel.architectures.MMRealSR", "MMRRDBNet_test", dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=16, num_block=1, num_grow_ch=8, num_feats=[16, 32, 64, 128], num_blocks=[1, 1, 1, 1])),
    "SPAN": ("spandrel.architectures.SPAN", "SPAN", dict(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2)),
    "RealCUGAN": ("spandrel.architectures.RealCUGAN", "UpCunet2x", dict()),
    "SAFMN": ("spandrel.architectures.SAFMN", "SAFMN", dict(dim=16, n_blocks=2, upscaling_factor=2)),
    "SAFMNBCIE": ("spandrel.architectures.SAFMNBCIE", "SAFMN_BCIE", dict(dim=16, n_blocks=1, num_layers=1, upscaling_factor=2)),
    "DCTLSA": ("spandrel.architectures.DCTLSA", "DCTLSA", dict(nf=20, num_modules=6, upscale=2, num_head=2)),
    "FFTformer": ("spandrel.architectures.FFTformer", "FFTformer", dict(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1)),
    "NAFNet": ("spandrel.architectures.NAFNet", "NAFNet", dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])),
    "ATD": ("spandrel.architectures.ATD", "ATD", dict(embed_dim=24, depths=(2,), num_heads=(2,), window_size=8, upscale=2, upsampler="pixelshuffle")),
    "MixDehazeNet": ("spandrel.architectures.MixDehazeNet", "MixDehazeNet", dict(embed_dims=[8, 16, 32, 16, 8], depths=[1, 1, 1, 1, 1])),
    "DRUNet": ("spandrel.architectures.DRUNet", "DRUNet", dict(in_nc=4, out_nc=3, nc=[16, 32, 64, 128], nb=2)),
    "DnCNN": ("spandrel.architectures.DnCNN", "DnCNN", dict(in_nc=3, out_nc=3, nc=16, nb=5)),
    "IPT": ("spandrel.architectures.IPT", "IPT", dict(patch_size=48, n_feats=16, num_heads=2, num_layers=1, scale=[1])),
    "DRCT": ("spandrel.architectures.DRCT", "DRCT", dict(embed_dim=24, depths=(1,), num_heads=(2,), window_size=8, upscale=2, upsampler="pixelshuffle", gc=8)),
    "ESRGAN": ("spandrel.architectures.ESRGAN", "RRDBNet", dict(num_filters=16, num_blocks=1, scale=2)),
    "PLKSR": ("spandrel.architectures.PLKSR", "PLKSR", dict(dim=16, n_blocks=2, upscaling_factor=2, kernel_size=9)),
    "RetinexFormer": ("spandrel.architectures.RetinexFormer", "RetinexFormer", dict(n_feat=8, stage=1, num_blocks=[1, 1, 1])),
    "HVICIDNet": ("spandrel.architectures.HVICIDNet", "CIDNet", dict(channels=[8, 8, 16, 32], heads=[1, 2, 4, 8])),
    "SeemoRe": ("spandrel.architectures.SeemoRe", "SeemoRe", dict(scale=2, num_experts=2, num_layers=1, embedding_dim=16)),
    "MoSR": ("spandrel.architectures.MoSR", "MoSR", dict(upscale=2, n_block=2, dim=16)),
    "MoESR": ("spandrel.architectures.MoESR", "MoESR", dict(scale=2, dim=16, n_blocks=1, n_block=1, upsample_dim=16)),
    "RCAN": ("spandrel.architectures.RCAN", "RCAN", dict(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4)),
    "FDAT": ("spandrel.architectures.FDAT", "FDAT", dict(scale=2, embed_dim=16, num_groups=1, depth_per_group=1, num_heads=2, mid_dim=16)),
    "AuraSR": ("spandrel.architectures.AuraSR", "UnetUpsampler", dict(dim=8, image_size=64, input_image_size=16, init_dim=8, style_network={"dim_in": 16, "dim_out": 32, "depth": 1}, up_dim_mults=(1, 2, 4, 8, 16), attn_depths=(1, 1, 1, 1, 1), mid_attn_depth=1, self_attn_dim_head=8, self_attn_heads=1, flash_attn=False, skip_connect_scale=0.4)),
    "SRFormer": ("spandrel_extra_arches.architectures.SRFormer", "SRFormer", dict(embed_dim=24, depths=(2,), num_heads=(2,), window_size=8, upscale=2, upsampler="pixelshuffle")),
    "CodeFormer": ("spandrel_extra_arches.architectures.CodeFormer", "CodeFormer", dict(dim_embd=64, n_head=2, n_layers=1, codebook_size=64)),
    "MAT": ("spandrel_extra_arches.architectures.MAT", "MAT", dict()),
    "DDColor": ("spandrel_extra_arches.architectures.DDColor", "DDColor", dict(encoder_name="convnext-t", input_size=(64, 64), nf=32, num_queries=8, dec_layers=1)),
    "AdaCode": ("spandrel_extra_arches.architectures.AdaCode", "AdaCodeSRNet_Contrast", dict(codebook_params=[[32, 64, 64]], gt_resolution=64)),
    "FeMaSR": ("spandrel_extra_arches.architectures.FeMaSR", "FeMaSRNet", dict(codebook_params=[[32, 64, 64]], gt_resolution=64)),
    "M3SNet": ("spandrel_extra_arches.architectures.M3SNet", "M3SNet", dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])),
    "Restormer": ("spandrel_extra_arches.architectures.Restormer", "Restormer", dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])),
    "MPRNet": ("spandrel_extra_arches.architectures.MPRNet", "MPRNet", dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1)),
    "MIRNet2": ("spandrel_extra_arches.architectures.MIRNet2", "MIRNet_v2", dict(n_feat=16, n_MRB=1)),
}


@dataclass
class Row:
    architecture: str
    task: str = ""
    scale: int = 0
    params: int = 0
    size_req: str = ""
    detected: str = ""
    fp32: str = ""  # "ok" or the reason
    exporter: str = ""
    fp32_db: float | None = None
    sizes: str = ""
    max_batch: int = 0
    fp16: str = ""
    fp16_ort_db: float | None = None
    fp16_arith_db: float | None = None
    islands: int | None = None
    trt: dict = field(default_factory=dict)  # line -> verdict
    speed: float | None = None  # ORT / PyTorch speed-up on the check size
    seconds: float = 0.0


def _build(arch: str):
    import torch

    module, cls, kwargs = SMALL[arch]
    torch.manual_seed(0)
    mod = importlib.import_module(module)
    found = getattr(mod, cls, None) or next(v for v in vars(mod).values() if getattr(v, "__name__", "") == cls)
    net = found(**kwargs)  # seeded random weights: the constructor's own initialisation
    return net.eval()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240] if text else ''}"


def _time(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def survey_one(arch: str, folder: Path, lines=("10.3", "10.13", "11.0")) -> Row:
    import numpy as np
    import onnx
    import torch
    from safetensors.torch import save_file

    from restormer_deploy.engines.tensorrt.lint import lint, verdict_of
    from restormer_deploy.export.onnx_export import SAMPLES, export, sample_inputs
    from restormer_deploy.export.stages import ExportOptions, check_sizes
    from restormer_deploy.restormer.presets import load_model, resolve

    row, t0 = Row(arch), time.perf_counter()
    try:
        net = _build(arch)
        row.params = sum(p.numel() for p in net.parameters())
        ckpt = folder / f"{arch}.safetensors"
        save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(ckpt))
        spec = resolve(str(ckpt))
        row.detected = spec.architecture
        row.task, row.scale = spec.task, spec.scale
        row.size_req = (f"min {spec.min_size}" if spec.min_size else "") + (f" x{spec.pad_multiple}" if spec.pad_multiple > 1 else "") + (" square" if spec.square else "")
        row.sizes = ", ".join(f"{h}x{w}" for h, w in check_sizes(spec))
    except Exception as exc:
        row.detected = row.detected or f"build/detect: {_short(exc)}"
        row.fp32 = "not reached"
        row.seconds = time.perf_counter() - t0
        return row
    fp32 = folder / f"{arch}_fp32.onnx"
    try:
        r = export(str(ckpt), fp32, options=ExportOptions(precision="fp32"))
        row.fp32, row.exporter, row.fp32_db = "ok", r.exporter, round(r.psnr_vs_torch, 1)
        row.max_batch = int({p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}.get("max_batch", "0"))
    except Exception as exc:
        row.fp32 = _short(exc)
        row.seconds = time.perf_counter() - t0
        return row
    try:
        r16 = export(str(ckpt), folder / f"{arch}_fp16.onnx", options=ExportOptions(precision="fp16"))
        row.fp16, row.fp16_ort_db, row.islands = "ok", round(r16.psnr_vs_torch, 1), r16.fp32_islands
        row.fp16_arith_db = None if r16.psnr_fp16_arithmetic is None or math.isnan(r16.psnr_fp16_arithmetic) else round(r16.psnr_fp16_arithmetic, 1)
    except Exception as exc:
        row.fp16 = _short(exc)
    try:
        trt = folder / f"{arch}_trt.onnx"
        export(str(ckpt), trt, options=ExportOptions(precision="fp32", target="trt"))
        model = onnx.load(str(trt), load_external_data=False)
        for line in lines:
            issues = lint(model, line)
            verdict = verdict_of(issues)
            first = next((i for i in issues if i.verdict == verdict), None)
            row.trt[line] = verdict + (f" ({first.op}: {first.message[:60]})" if first is not None else "")
    except Exception as exc:
        row.trt = {"error": _short(exc)}
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        session = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
        net2, spec2 = load_model(str(ckpt))
        x = sample_inputs(spec2, check_sizes(spec2)[0], SAMPLES[0])[0]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                t_torch = _time(lambda: net2(torch.from_numpy(x.copy())))
            t_ort = _time(lambda: session.run(None, {session.get_inputs()[0].name: x}))
        finally:
            torch.set_num_threads(threads)
        row.speed = round(t_torch / t_ort, 2)
    except Exception:
        pass
    row.seconds = round(time.perf_counter() - t0, 1)
    return row


def survey(archs: list[str] | None = None, on_row=None) -> list[Row]:
    from restormer_deploy.restormer.zoo import registry_ids

    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for arch in archs or registry_ids():
            if arch not in SMALL:
                rows.append(Row(arch, detected="no small configuration in the survey", fp32="not reached"))
                continue
            try:
                row = survey_one(arch, Path(tmp))
            except Exception as exc:  # never lose the other rows
                row = Row(arch, fp32=f"survey error: {_short(exc)}")
                traceback.print_exc()
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def _cell(text: str, limit: int = 260) -> str:
    import re

    text = " ".join(re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", str(text)).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _db(v) -> str:
    return "" if v is None else ("inf" if v == float("inf") else f"{v:.1f}")


def markdown(rows: list[Row], header: str = "") -> str:
    ok32 = sum(r.fp32 == "ok" for r in rows)
    ok16 = sum(r.fp16 == "ok" and (r.fp16_arith_db or 0) >= 45 for r in rows)
    lines_ = sorted({k for r in rows for k in r.trt if k != "error"}, key=lambda v: tuple(int(p) for p in v.split(".")))
    out = [
        "# Architectures: every spandrel architecture through the verified path",
        "",
        "Generated by `tests/test_architectures.py` (`python -m restormer_deploy.cli.zoo_survey --out docs/ARCHITECTURES.md`):",
        "each architecture of spandrel's registry is built with small hyperparameters and seeded random weights,",
        "saved as safetensors, loaded back through detection, exported to FP32 ONNX (checked against PyTorch,",
        "floor 60 dB, at every size listed and at batches 1 and 2) and to FP16 (FP32 islands measured on the bundled",
        "samples, parity under emulated FP16 arithmetic, floor 45 dB), the TensorRT-target FP32 file linted per",
        "TensorRT line, and ONNX Runtime timed against PyTorch eager (one thread, first check size).",
        "",
        header,
        f"**{ok32} of {len(rows)} export at FP32 and pass parity at every size; {ok16} pass FP16 under FP16 arithmetic.**",
        "",
        "| architecture | task | scale | params | size req. | FP32 | exporter | dB | sizes | batch | FP16 (ORT dB / FP16-arith. dB / islands) | "
        + " | ".join(f"TRT {l}" for l in lines_) + " | ORT/PyTorch |",
        "|---|---|---|---:|---|---|---|---:|---|---|---|" + "---|" * len(lines_) + "---:|",
    ]
    for r in rows:
        fp16 = (f"ok ({_db(r.fp16_ort_db)} / {_db(r.fp16_arith_db) or 'not emulated'} / {r.islands})" if r.fp16 == "ok" else _cell(r.fp16))
        trt = [r.trt.get(l, r.trt.get("error", "")) for l in lines_]
        out.append(f"| {r.architecture} | {r.task} | {r.scale or ''} | {r.params:,} | {r.size_req.strip()} | "
                   f"{_cell(r.fp32)} | {r.exporter} | {_db(r.fp32_db)} | {r.sizes} | "
                   f"{'1 only' if r.max_batch == 1 else ('any' if r.fp32 == 'ok' else '')} | {fp16} | "
                   + " | ".join(_cell(str(t), 90) for t in trt) + f" | {'' if r.speed is None else f'{r.speed:.2f}x'} |")
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"


app = typer.Typer(add_completion=False)


@app.command()
def main(out: Path = typer.Option(None, "--out", help="Write the Markdown table here."),
         only: str = typer.Option("", "--only", help="Comma-separated architecture ids."),
         json_out: Path = typer.Option(None, "--json", help="Write the rows as JSON (as the survey goes)."),
         render: list[Path] = typer.Option([], "--render", help="Only write --out from these JSON files of rows (later files win).")) -> None:
    """Survey spandrel's architectures (see the module docstring)."""
    if render:
        from restormer_deploy.restormer.zoo import registry_ids

        by_arch: dict[str, Row] = {}
        for path in render:
            for data in json.loads(path.read_text()):
                by_arch[data["architecture"]] = Row(**data)
        rows = [by_arch.get(a, Row(a, fp32="not surveyed yet")) for a in registry_ids()]
        measured = sum(r.architecture in by_arch for r in rows)
        header = ("" if measured == len(rows) else
                  f"Rendered from a partial survey: {measured} of {len(rows)} architectures measured so far "
                  "(rows marked *not surveyed yet* were not reached; `make paper-full` runs them all).\n")
        out.write_text(markdown(rows, header=header))
        return
    archs = [a for a in only.split(",") if a] or None
    done: list[Row] = []

    def on_row(r: Row) -> None:
        done.append(r)
        print(f"{r.architecture}: fp32 {r.fp32[:90]} fp16 {r.fp16[:60]} {r.fp16_arith_db} {r.trt} {r.seconds}s", flush=True)
        if json_out:  # as it goes: a long survey keeps what it measured
            json_out.write_text(json.dumps([asdict(x) for x in done], indent=1))

    rows = survey(archs, on_row=on_row)
    if out:
        out.write_text(markdown(rows))
    if json_out:
        json_out.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    app()
