"""DDL of the artlens store (artlens.duckdb) and of the tag log (artlens.tags.duckdb).

The store is rebuilt whole by `make embed` and swapped in atomically. Tags live in their own
file, so rebuilding the store can never drop or rewrite a reviewer's decision; tags refer to a
painting by path + sha1 and to classes by name, so they survive re-training.
"""

# What one kind of evidence (or all together) says of a label: the evidence table's verdicts,
# written by embeddings.verdicts and embeddings.evidence_table, counted by the store, marked on the
# Review card.
AGAINST, SUPPORTS, MIXED = "against", "supports", "mixed"
LEFT_OUT = "left out"        # the model's line where the look is not scored (a photo defect)
UNJUDGED = "cannot judge"    # every line of a label no other painting carries: nothing learnt its class
VERDICTS = (AGAINST, SUPPORTS, MIXED, LEFT_OUT, UNJUDGED)

STORE_TABLES = {
    "runs": """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, checkpoint_sha1 VARCHAR, arch VARCHAR, backbone VARCHAR,
        weights VARCHAR, image_size INTEGER, embedding_dim INTEGER, data_root VARCHAR, data_hash VARCHAR,
        created TIMESTAMP, metrics JSON, benchmark JSON)""",
    "images": """CREATE TABLE images (
        image_id INTEGER PRIMARY KEY, path VARCHAR NOT NULL UNIQUE, sha1 VARCHAR, width INTEGER,
        height INTEGER, split VARCHAR, artist_name VARCHAR, title VARCHAR, year_lo DOUBLE, year_hi DOUBLE,
        date_text VARCHAR)""",
    "classes": """CREATE TABLE classes (task VARCHAR, class_index INTEGER, name VARCHAR,
        PRIMARY KEY (task, class_index))""",
    # class_index: the label as given in the data; training_index: the label the run trained on
    # (differs where `make train --apply-tags` applied a review decision; NULL = dropped).
    "labels": """CREATE TABLE labels (image_id INTEGER, task VARCHAR, class_index INTEGER,
        training_index INTEGER, PRIMARY KEY (image_id, task))""",
    # wrong_weight: the painting's share of the estimated number of wrong labels (embeddings.prevalence)
    "predictions": """CREATE TABLE predictions (
        image_id INTEGER, task VARCHAR, probs FLOAT[], predicted INTEGER, p_given FLOAT,
        top3 INTEGER[], top3_probs FLOAT[], source VARCHAR, wrong_weight DOUBLE, PRIMARY KEY (image_id, task))""",
    "embeddings": """CREATE TABLE embeddings (image_id INTEGER PRIMARY KEY, faiss_id BIGINT, vector FLOAT[])""",
    "scores": """CREATE TABLE scores (image_id INTEGER, task VARCHAR, detector VARCHAR, score DOUBLE,
        rank INTEGER, flag BOOLEAN, PRIMARY KEY (image_id, task, detector))""",
    "projections": """CREATE TABLE projections (image_id INTEGER, method VARCHAR, x FLOAT, y FLOAT,
        PRIMARY KEY (image_id, method))""",
    "duplicate_groups": """CREATE TABLE duplicate_groups (group_id INTEGER, image_id INTEGER,
        similarity FLOAT, conflicting_tasks VARCHAR, PRIMARY KEY (group_id, image_id))""",
    "wrong_label_estimates": """CREATE TABLE wrong_label_estimates (task VARCHAR, class_index INTEGER,
        labelled INTEGER, estimated_wrong DOUBLE, low DOUBLE, high DOUBLE)""",
    # One row per (painting, task, kind of evidence): what that evidence alone says of the label
    # (embeddings.evidence_table); verdict: one of VERDICTS ('' where the kind says nothing); line:
    # the Review card's words.
    "evidence": f"""CREATE TABLE evidence (image_id INTEGER, task VARCHAR, kind VARCHAR, p_given DOUBLE,
        best INTEGER, p_best DOUBLE, verdict VARCHAR CHECK (verdict IN ('', {", ".join(f"'{v}'" for v in VERDICTS)})),
        line VARCHAR, PRIMARY KEY (image_id, task, kind))""",
    # The reproduction's quality (embeddings.quality): measures and flags ('' = none, else
    # comma-separated names such as 'dark,greyscale').
    "image_quality": """CREATE TABLE image_quality (image_id INTEGER PRIMARY KEY, brightness DOUBLE,
        colour DOUBLE, sharpness DOUBLE, entropy DOUBLE, flags VARCHAR)""",
    "store_info": """CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value VARCHAR)""",
}

TAG_DDL = [
    "CREATE SEQUENCE IF NOT EXISTS tag_seq START 1",
    """CREATE TABLE IF NOT EXISTS tags (
        tag_id BIGINT PRIMARY KEY DEFAULT nextval('tag_seq'),
        path VARCHAR NOT NULL, sha1 VARCHAR, task VARCHAR NOT NULL,
        decision VARCHAR NOT NULL CHECK (decision IN ('mislabel', 'correct', 'unsure')),
        given_label VARCHAR, suggested_label VARCHAR, note VARCHAR, reviewer VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, run_id VARCHAR)""",
]

# The same table on PostgreSQL (db/tags.py, `--tags postgresql://...`).
PG_TAG_DDL = [
    """CREATE TABLE IF NOT EXISTS tags (
        tag_id BIGSERIAL PRIMARY KEY,
        path TEXT NOT NULL, sha1 TEXT, task TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('mislabel', 'correct', 'unsure')),
        given_label TEXT, suggested_label TEXT, note TEXT, reviewer TEXT NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT clock_timestamp(), run_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS tags_path_task ON tags (path, task, tag_id)",
]

DECISIONS = ("mislabel", "correct", "unsure")
