"""Grad-CAM: the heat points at evidence the model uses, and the CLI writes a PNG."""
from __future__ import annotations

import numpy as np
from PIL import Image

from conftest import run_cli


def test_gradcam_is_faithful_on_most_paintings(trained):
    """Blanking the hottest 10% of a painting lowers the top-class probability of the fold head that
    held it out more than blanking a random 10% (blocks of the map's cell size), on most of a fixed
    set of paintings."""
    from embeddings.explain import deletion_drops, explain
    from trainer.checkpoint import Embedder, FoldIndex
    from trainer.data import load_image
    folds = FoldIndex(trained["run_dir"])
    heads = {k: Embedder(trained["run_dir"], fold=k) for k in range(3)}
    paths = sorted(trained["root"].glob("*/*.jpg"))[::6][:40]
    hot, rnd = [], []
    for p in paths:
        e = heads[folds.fold_of(p.relative_to(trained["root"]).as_posix())]
        im = load_image(p)
        top = int(explain(e, im, "style").probs["style"].argmax())
        h, r = deletion_drops(e, im, "style", top, fraction=0.1, n_random=5, seed=0)
        hot.append(h)
        rnd.append(r)
    hot, rnd = np.array(hot), np.array(rnd)
    assert (hot > rnd).sum() > len(paths) / 2, list(zip(hot.round(3), rnd.round(3)))
    assert hot.mean() > rnd.mean()


def test_gradcam_shapes_and_classes(trained):
    from embeddings.explain import explain, explanation_panels
    from trainer.checkpoint import Embedder
    e = Embedder(trained["run_dir"])
    im = Image.new("RGB", (300, 200), (120, 60, 30))
    ex = explain(e, im, "genre", [0, 1])
    S = e.record.image_size
    assert ex.heats.shape == (2, S, S) and ex.crop.size == (S, S)
    assert ex.heats.min() >= 0 and ex.heats.max() <= 1 + 1e-6
    assert abs(ex.probs["genre"].sum() - 1) < 1e-4
    top = int(ex.probs["genre"].argmax())
    other = (top + 1) % len(e.record.classes['genre'])
    panels = explanation_panels(e, im, "genre", other)
    assert [c.split(":")[0] for c, _ in panels] == ["given", "model's top"]
    assert len(explanation_panels(e, im, "genre", top)) == 1       # given = top: one heat map
    # the top class the pages show is the cross-fitted one, which may differ from the final model's
    both = explanation_panels(e, im, "genre", top, other)
    assert [c.split(":")[0] for c, _ in both] == ["given", "model's top"]
    assert both[1][0].startswith(f"model's top: {e.record.classes['genre'][other]} ")
    assert [c.split(":")[0] for c, _ in explanation_panels(e, im, "genre", None, other)] == ["model's top"]


def test_explain_cli_writes_png_and_refuses_bad_input(trained, tmp_path):
    img = sorted(trained["root"].glob("*/*.jpg"))[0]
    out = tmp_path / "cam.png"
    r = run_cli("explain", str(img), "--task", "style", "--run", str(trained["run_dir"]), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as im:
        assert im.size[0] in (224, 448) and im.size[1] > 224     # one or two 224-px panels under captions
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    r = run_cli("explain", str(bad), "--run", str(trained["run_dir"]), "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"error: {bad}")
    r = run_cli("explain", str(img), "--task", "style", "--label", "Nope", "--run", str(trained["run_dir"]))
    assert r.returncode == 2 and "is not a style class" in r.stderr


def test_a_flipped_label_is_explained_by_the_head_that_never_saw_it(store):
    """A painting whose style was flipped in the test collection: the panels come from its fold
    head, say "cross-fitted", and give that head's probabilities (the given label low, the suspected
    class high), which the final model, trained on the flipped label, does not."""
    import duckdb

    from dashboard.service import Artlens
    from db.store import Paths
    from embeddings.explain import explain
    from trainer.checkpoint import Embedder
    from trainer.data import load_image
    con = duckdb.connect(str(store["store"]), read_only=True)
    rows = con.execute("""SELECT i.path, cg.name, cp.name, p.p_given, p.probs FROM predictions p
        JOIN images i USING (image_id) JOIN labels l ON l.image_id = i.image_id AND l.task = 'style'
        JOIN classes cg ON cg.task = 'style' AND cg.class_index = l.class_index
        JOIN classes cp ON cp.task = 'style' AND cp.class_index = p.predicted
        WHERE p.task = 'style' AND p.source = 'cross-fit' AND p.predicted <> l.class_index ORDER BY p.p_given""").fetchall()
    con.close()
    flipped = [r for r in rows if r[0] in store["flipped"]]
    assert flipped, "no flipped painting is predicted away from its label by the cross-fit"
    path, given, top, p_given, probs = flipped[0]
    app = Artlens(Paths.from_store(store["store"], tags=store["tags"]))
    fold = app.fold_of(path)
    assert fold is not None
    panels = app.gradcam_panels(lambda k: Embedder(store["run_dir"], fold=k) if k is not None else None, path,
                                "style", given)
    captions = [c for c, _ in panels]
    assert captions[0].startswith(f"given: {given} (cross-fitted p ") and captions[1].startswith(f"model's top: {top} (cross-fitted p ")
    shown = [float(c.rsplit(" ", 1)[1].rstrip(")")) for c in captions]
    assert abs(shown[0] - p_given) < 0.05 and abs(shown[1] - max(probs)) < 0.05, (shown, p_given, max(probs))
    assert shown[0] < shown[1]
    final = explain(Embedder(store["run_dir"]), load_image(store["root"] / path), "style")
    names = Embedder(store["run_dir"]).record.classes["style"]
    assert final.probs["style"][names.index(given)] > shown[0] + 0.1   # the final model learnt the flip
