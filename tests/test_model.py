"""Architectures, masked multi-task loss, the offline pretrained backbone, metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.metrics import classification_metrics, confusion_matrix, macro_f1, top_k_accuracy
from trainer.model import ARCHS, CRNNClassifier, masked_multitask_loss

CLASSES = {"artist": 24, "genre": 10, "style": 27}


@pytest.mark.parametrize("arch,in_ch,hw,dim", [("effnet_bilstm", 1280, 7, 512), ("resnet_lstm", 2048, 7, 512),
                                                ("rowcol_bigru", 1280, 7, 960), ("scratch_crnn", 3, 96, 256)])
def test_forward_shapes(arch, in_ch, hw, dim):
    model = CRNNClassifier(arch, in_ch, CLASSES).eval()
    emb, logits = model(torch.randn(3, in_ch, hw, hw))
    assert emb.shape == (3, dim) and model.embedding_dim == dim
    assert {t: lg.shape for t, lg in logits.items()} == {t: (3, n) for t, n in CLASSES.items()}
    assert set(ARCHS) == {"effnet_bilstm", "resnet_lstm", "rowcol_bigru", "scratch_crnn"}


def test_masked_loss_ignores_missing_labels():
    torch.manual_seed(0)
    logits = {"style": torch.randn(4, 5), "artist": torch.randn(4, 3)}
    targets = {"style": torch.tensor([0, 1, 2, 3]), "artist": torch.tensor([1, -1, -1, 2])}
    loss = masked_multitask_loss(logits, targets)
    # Changing the logits of rows without an artist label must not change the loss ...
    changed = {"style": logits["style"], "artist": logits["artist"].clone()}
    changed["artist"][1:3] += 100.0
    assert torch.isclose(loss, masked_multitask_loss(changed, targets))
    # ... and the artist term equals plain CE over the two labelled rows.
    expected = (torch.nn.functional.cross_entropy(logits["style"], targets["style"]) +
                torch.nn.functional.cross_entropy(logits["artist"][[0, 3]], torch.tensor([1, 2])))
    assert torch.isclose(loss, expected)
    # A batch where a task has no label at all contributes nothing (not NaN).
    none = masked_multitask_loss(logits, {"style": targets["style"], "artist": torch.full((4,), -1)})
    assert torch.isfinite(none) and torch.isclose(none, torch.nn.functional.cross_entropy(logits["style"], targets["style"]))


# Lite2 calls flower.jpg "honeycomb" (its top 3: honeycomb, bee, ant: the bee on the daisy's centre),
# so it is checked on the palace photo only; random weights would not find either.
@pytest.mark.parametrize("version,size,stage,photos", [
    (0, 224, (192, 7, 7), (("china.jpg", "palace"), ("flower.jpg", "daisy"))),
    (2, 260, (208, 9, 9), (("china.jpg", "palace"),))])
def test_pretrained_lite_labels_natural_photos(version, size, stage, photos):
    """The registry-shipped weights really are ImageNet weights: sklearn's sample photos are recognised;
    and the stem + tail split is the same network."""
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from torchvision.models import ResNet50_Weights

    from trainer.backbones import build_backbone, load_efficientnet_lite
    from trainer.images import image_tensor
    cats = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    model = load_efficientnet_lite(version).eval()
    with torch.no_grad():
        for photo, label in photos:
            x = image_tensor(Image.fromarray(load_sample_image(photo)), size, (0.5,) * 3, (0.5,) * 3)[None]
            assert cats[int(model(x).argmax())] == label
        bb = build_backbone(f"efficientnet_lite{version}")
        assert bb.default_size == size
        bb.net.eval()
        s = bb.stem(x)
        assert s.shape[1:] == stage
        assert torch.equal(bb.tail(s), bb.net(x)) and bb.net(x).shape[1] == 1280


def test_torchvision_backbone_with_local_weights(tmp_path):
    import torchvision
    from trainer.backbones import build_backbone
    from trainer.cli import UserError
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), tmp_path / "b0.pt")
    bb = build_backbone("efficientnet_b0", str(tmp_path / "b0.pt"))
    assert bb.channels == 1280 and "b0.pt" in bb.weights
    with pytest.raises(UserError, match="not 'none', 'imagenet' or an existing"):
        build_backbone("resnet50", str(tmp_path / "missing.pt"))


def test_paired_gain_resamples_pairs():
    """The gain of B over A on the same paintings; its interval is that of the per-painting
    differences, so two runs that disagree on no painting have a zero-width interval."""
    from trainer.metrics import bootstrap_interval, paired_gain
    a = np.array([1, 0, 1, 0] * 50)
    b = np.array([1, 1, 1, 0] * 50)          # B right on every painting A got right, and on a quarter more
    gain, low, high = paired_gain(a, b)
    assert gain == pytest.approx(0.25) and low < 0.25 < high and low > 0.15
    assert paired_gain(a, a) == (0.0, 0.0, 0.0)
    lo_a, hi_a = bootstrap_interval(a)
    assert high - low < 2 * (hi_a - lo_a)   # narrower than comparing two separate intervals
    assert np.isnan(paired_gain(np.array([]), np.array([]))[0])


def test_metrics_on_known_values():
    labels = np.array([0, 0, 1, 1, 2, -1])
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.6, .3, .1], [.1, .2, .7], [1, 0, 0]])
    assert top_k_accuracy(labels, probs, 1) == pytest.approx(3 / 5)
    assert top_k_accuracy(labels, probs, 2) == pytest.approx(5 / 5)
    cm = confusion_matrix(labels, probs.argmax(1), 3)
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert macro_f1(labels, probs.argmax(1), 3) == pytest.approx((0.5 + 0.5 + 1) / 3)
    m = classification_metrics(labels, probs, ["a", "b", "c"])
    assert m["n"] == 5 and m["per_class_recall"] == {"a": 0.5, "b": 0.5, "c": 1.0}
