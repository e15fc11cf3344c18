"""FiftyOne's own check of what `artlens export --fiftyone` wrote: run with fiftyone installed
(`.venv-fiftyone/bin/python`, `make fiftyone`), not inside the artlens environment.

    python bench/fiftyone_check.py DIR

Reads DIR with FiftyOne's importer for the format (`LegacyFiftyOneDatasetImporter`, which
`fo.Dataset.from_dir(DIR, fo.types.FiftyOneDataset)` defers to), so every sample goes through
FiftyOne's `Sample.from_dict`. Where a MongoDB is reachable (FiftyOne's bundled one, or
FIFTYONE_DATABASE_URI) it also loads DIR as a dataset and counts its samples there. Prints a JSON
summary: samples, each field's FiftyOne type (the most common per field), the Classification
fields, the embedding size, tag counts, whether the database load ran; exits 1 on any error.
"""
import json
import sys
from collections import Counter


def main(directory: str) -> int:
    import fiftyone.core.labels as fol
    from fiftyone.utils.data.importers import LegacyFiftyOneDatasetImporter

    importer = LegacyFiftyOneDatasetImporter(directory)
    importer.setup()
    types, dims, tags, errors, n = {}, set(), Counter(), [], 0
    for sample in importer:
        n += 1
        d = sample.to_dict()
        for name, value in d.items():
            if name in ("filepath", "tags", "metadata", "created_at", "last_modified_at"):
                continue
            v = sample[name]
            kind = type(v).__name__
            if isinstance(v, fol.Classification) and not v.label:
                errors.append(f"{sample.filepath}: {name} has no label")
            types.setdefault(name, Counter())[kind] += 1
        dims.add(len(sample["embedding"]))
        tags.update(sample.tags)
    loaded = None
    try:
        import fiftyone as fo
        fo.config.database_validation = False
        ds = fo.Dataset.from_dir(directory, fo.types.FiftyOneDataset, name="artlens-check", overwrite=True)
        loaded = len(ds)
        ds.delete()
    except Exception as e:     # no MongoDB here: the importer's parse above is the check
        loaded = f"no database: {type(e).__name__}"
    summary = {"samples": n, "fields": {k: c.most_common(1)[0][0] for k, c in sorted(types.items())},
               "embedding_dims": sorted(dims), "tags": dict(tags), "database_load": loaded, "errors": errors[:10]}
    print(json.dumps(summary))
    return 1 if errors or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
