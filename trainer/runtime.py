"""The frozen backbone through ONNX Runtime, the CPU inference engine for feature extraction.

`inference_fn(net, size, cache_dir, engine)` -> a function (B, 3, S, S) float tensor -> (B, C, h, w)
float32 numpy. Measured side by side on this 2-core machine (`make bench ARGS="--steps features"`),
ONNX Runtime runs the Lite0 stem several times faster than PyTorch eager; the exported graph is
cached under `<cache_dir>/onnx/`, keyed by a hash of the weights, so it is exported once.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

log = logging.getLogger("trainer.runtime")
ENGINES = ("auto", "onnx", "eager")


def weights_hash(net: torch.nn.Module) -> str:
    """sha1 of every parameter and buffer (which weights a cached export was made from)."""
    h = hashlib.sha1()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_onnx(net: torch.nn.Module, size: int, path: Path) -> None:
    """Export `net` (eval mode, batch dimension dynamic) to `path`, atomically."""
    import warnings
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, 3, size, size), str(tmp), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=17, dynamo=False)
    os.replace(tmp, path)


def inference_fn(net: torch.nn.Module, size: int, cache_dir: str | Path, engine: str = "auto", device: str = "cpu"
                 ) -> tuple[Callable[[torch.Tensor], np.ndarray], str]:
    """(forward function, engine used). 'auto' = ONNX Runtime on a CPU when it is installed and
    the export works, else PyTorch eager (always eager on cuda, where eager + AMP is the fast path)."""
    def eager(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cuda", enabled=device.startswith("cuda")):   # AMP on a GPU
            return net.to(device).eval()(x.to(device)).float().cpu().numpy()
    if engine == "eager" or (engine == "auto" and device != "cpu"):
        return eager, "eager"
    try:
        import onnxruntime as ort
        path = Path(cache_dir) / "onnx" / f"{type(net).__name__}-{weights_hash(net)}-{size}.onnx"
        if not path.is_file():
            log.info("exporting the frozen backbone to ONNX (%s), once", path)
            export_onnx(net, size, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:   # no onnxruntime, or an op it cannot export: eager still works
        if engine == "onnx":
            from trainer.cli import UserError
            raise UserError(f"--engine onnx: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        log.warning("ONNX Runtime unavailable (%s: %s); using PyTorch eager", type(e).__name__, str(e)[:120])
        return eager, "eager"
    return (lambda x: session.run(None, {"x": x.numpy()})[0]), "onnx"
