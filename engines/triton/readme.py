"""The README.md written next to a generated Triton model's config.pbtxt."""

from __future__ import annotations

from restormer_deploy.engines.triton.releases import SOURCE, TRITON_RELEASES, releases_for

PLUGIN_LIB = "libconverse2d_plugin.so"


def _release_table(tensorrt_version: str | None) -> list[str]:
    lines = ["| Triton container | Triton server | TensorRT | fits this plan |", "| --- | --- | --- | --- |"]
    fits = set(releases_for(tensorrt_version)) if tensorrt_version else set()
    for release, (server, trt) in TRITON_RELEASES.items():
        lines.append(f"| {release} | {server} | {trt} | {'yes' if release in fits else ''} |")
    return lines + ["", f"Source: {SOURCE}. Check the release notes of the release you deploy."]


def model_readme(name: str, backend: str, meta: dict, max_batch_size: int, *, tensorrt_version: str | None = None,
                 release: str | None = None, plugin_sha256: str = "", ensemble: str | None = None,
                 profile: dict | None = None, gpu: bool = True, plan_check: str = "") -> str:
    fits = releases_for(tensorrt_version) if tensorrt_version else []
    image = release or (fits[-1] if fits else (list(TRITON_RELEASES)[-1] if backend == "onnxruntime" else "YY.MM"))
    gpus = "--gpus all " if gpu else ""
    mount = "-v $PWD/build/converse2d:/plugins " if plugin_sha256 else ""
    plugin_flag = f" \\\n    --backend-config=tensorrt,plugins=/plugins/{PLUGIN_LIB}" if plugin_sha256 else ""
    lines = [
        f"# Triton model `{name}`",
        "",
        f"Written by `restore-export --format triton-repo`: {meta.get('preset', name)} ({meta.get('task', '')}, "
        f"scale {meta.get('scale', 1)}, {meta.get('in_channels')} -> {meta.get('out_channels')} channels, "
        f"{meta.get('precision', 'fp32')}), backend `{backend}`, max_batch_size {max_batch_size}. The input is NCHW "
        f"float in [0, 1], height and width padded to a multiple of {meta.get('pad_multiple', 1)} "
        f"(the config's parameters carry the artefact metadata).",
        "",
        "## Serve",
        "",
        "```bash",
        f"docker run {gpus}--rm -p8000:8000 -p8001:8001 -v $PWD/<repository>:/models {mount}\\",
        f"    nvcr.io/nvidia/tritonserver:{image}-py3 tritonserver --model-repository=/models{plugin_flag}",
        "```",
        "",
    ]
    if backend == "tensorrt":
        lines += [
            "## TensorRT and the Triton release",
            "",
            f"The plan was built with TensorRT {tensorrt_version}. A plan only deserialises with exactly that "
            f"TensorRT, so the server must be "
            + (f"Triton {', '.join(fits)}." if fits else "a Triton build with that TensorRT (no release in the table below "
               "ships it: rebuild the engine with the TensorRT of your Triton release)."),
            "",
            *_release_table(tensorrt_version),
            "",
        ]
        if plan_check:
            lines += [f"Checked when this repository was written: {plan_check}.", ""]
        if profile:
            lines += ["Optimisation profile (requests outside it fail; tile large images on the client): "
                      + "; ".join(f"`{k}` min {v['min']} max {v['max']}" for k, v in profile.items()), ""]
        lines += [
            "Jetson: Triton has JetPack builds (the release's tarball for JetPack, or the `-py3-igpu` container); "
            "their TensorRT is JetPack's, so build the plan on the device with that TensorRT.",
            "",
        ]
    if plugin_sha256:
        lines += [
            "## The Converse2D plugin",
            "",
            f"The plan contains Converse2D plugin layers (built with `{PLUGIN_LIB}` of sha256 `{plugin_sha256}`). "
            "Triton's TensorRT backend loads plugin libraries with a plain `dlopen`, either from "
            f"`--backend-config=tensorrt,plugins=/plugins/{PLUGIN_LIB}` (several: separate with `;`) or via "
            f"`LD_PRELOAD=/plugins/{PLUGIN_LIB}` in the server's environment (`docker run -e LD_PRELOAD=...`). "
            "Neither calls the library's `getCreators`, so build the library that the server loads with "
            "`-DCONVERSE2D_REGISTER_ON_LOAD=ON` (it registers the creator when loaded) against the TensorRT of the "
            "Triton release, see engines/plugins/converse2d/README.md. Use one of the two ways, not both: "
            "registering the creator twice fails.",
            "",
        ]
    if ensemble:
        lines += [
            "## Images in, images out",
            "",
            f"`{ensemble}` is an ensemble of `{name}_pre` (Python backend: uint8 HWC image -> padded NCHW tensor), "
            f"`{name}` and `{name}_post` (crop, clip, round -> uint8 image; grey in, grey out). The two "
            "Python models share `processing.py`, the module restore-client uses too (numpy only).",
            "",
            "```bash",
            f"restore-client photos/ -o restored/ --url localhost:8000 --model {ensemble}",
            "```",
            "",
        ]
    else:
        lines += ["## Client", "", "```bash",
                  f"restore-client photos/ -o restored/ --url localhost:8000 --model {name}   # pads/crops on the client",
                  "```", ""]
    return "\n".join(lines)
