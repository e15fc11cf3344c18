"""The backbone and detector registries and the typed run record (fast tier: no training)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from embeddings import detectors as D
from trainer.backbones import BUILDERS
from trainer.checkpoint import Checkpoint, RunRecord
from trainer.cli import UserError
from trainer.config import TrainConfig
from trainer.model import ARCHS
from trainer.specs import BACKBONE_SPECS, BACKBONES, HEADS, resolve_backbone

from conftest import ROOT


def test_backbone_entries_say_what_fits_and_auto_resolves():
    assert BACKBONES[0] == "efficientnet_lite0" and set(BACKBONES) == set(BACKBONE_SPECS)
    # the torch-free entries and the builders / heads registered with torch name the same things
    assert set(BUILDERS) == set(BACKBONE_SPECS) and set(ARCHS) == set(HEADS)
    assert BACKBONE_SPECS["efficientnet_lite0"].offline_weights and not BACKBONE_SPECS["resnet50"].offline_weights
    assert resolve_backbone("rowcol_bigru", "auto") == "efficientnet_lite0"
    assert resolve_backbone("scratch_crnn", "auto") == "pixels"
    with pytest.raises(UserError, match="raw pixels"):
        resolve_backbone("scratch_crnn", "resnet50")
    with pytest.raises(UserError, match="only works with --arch scratch_crnn"):
        resolve_backbone("rowcol_bigru", "pixels")
    with pytest.raises(UserError, match="unknown backbone"):
        resolve_backbone("rowcol_bigru", "vgg")


def test_every_detector_has_a_kind_inputs_and_help_and_the_table_follows_the_registry():
    for d in D.DETECTOR_REGISTRY.values():
        assert d.kind in D.KINDS and d.inputs and d.help, d.name
    assert D.DETECTORS[-1] == "evidence" and D.REVIEW_DEFAULT in D.DETECTORS
    assert set(D.EMBEDDING_DETECTORS) == {"centroid", "centroid_margin", "mahalanobis", "mahalanobis_margin",
                                          "zscore", "knn"}
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet(np.ones(3), 50)
    x = D.DetectorInputs(y, probs, {d: rng.random(50) for d in D.EMBEDDING_DETECTORS}, rng.integers(0, 3, (50, 5)))
    # adding a detector is one entry: the table, its flags and the help pick it up
    D.register_detector("p_top", "model: softmax", "cross-fitted softmax", "top class probability",
                        lambda inp, _: inp.probs.max(1), threshold=0.9)
    try:
        scores, flags = D.detector_table(x)
        assert list(scores) == list(D.DETECTOR_REGISTRY)
        assert np.allclose(scores["p_top"], probs.max(1)) and (flags["p_top"] == (probs.max(1) > 0.9)).all()
    finally:
        del D.DETECTOR_REGISTRY["p_top"]
    assert np.isnan(scores["title"]).all()   # no metadata given: nothing to say


def test_run_record_upgrades_older_runs_and_round_trips():
    old = {"run_id": "r", "arch": "rowcol_bigru", "backbone": "efficientnet_lite0", "tasks": ["style"],
           "classes": {"style": ["a", "b"]}, "in_channels": 1280, "image_size": 224, "a_key_since_removed": 1}
    rec = RunRecord.from_saved(old)
    assert rec.texture_dim == 0 and rec.knn_k == 10 and rec.folds == 0 and rec.applied_tags is None
    assert rec.n_classes == {"style": 2}
    ck = Checkpoint(rec, TrainConfig(seed=3), {"w": 1})
    back = Checkpoint.from_saved(ck.to_saved())
    assert back.record == rec and back.config == TrainConfig(seed=3) and back.tail_state is None
    before_texture = {k: v for k, v in ck.to_saved()["config"].items() if k not in ("texture", "fit_on")}
    assert Checkpoint.from_saved({**ck.to_saved(), "config": before_texture}).config.texture is False


def test_help_and_flag_errors_answer_without_loading_torch(tmp_path):
    """`artlens train --help`, `artlens embed --help`, a wrong flag and a wrong data folder read only
    the torch-free config, registry entries (trainer/specs.py) and data loader, so they answer at
    once; so does every other command's --help."""
    (tmp_path / "bad.csv").write_text("path,artist,genre\na.jpg,x,y\n")
    code = ("import contextlib, io, sys\nfrom artlens.cli import BENCHES, COMMANDS, main\nerr = io.StringIO()\n"
            "def run(argv):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):\n"
            "        try:\n            print('exit', main(argv), file=err)\n        except SystemExit:\n            pass\n"
            "for argv in (['train', '--help'], ['embed', '--help'], ['train', '--backbone', 'vgg'],\n"
            f"             ['train', '--data', {str(tmp_path / 'nowhere')!r}], ['train', '--data', {str(tmp_path / 'bad.csv')!r}]):\n"
            "    run(argv)\n"
            "print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))\n"
            "for name in [c for c in COMMANDS if c != 'bench'] + ['bench ' + b for b in BENCHES]:\n"
            "    run(name.split() + ['--help'])\n"
            "print('torch' in sys.modules)\nprint(err.getvalue())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["[]", "False"], r.stdout
    errors = [line for line in r.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "data root" in errors[0] and "bad.csv" in errors[1], r.stdout
    assert r.stdout.count("exit 2") == 2
