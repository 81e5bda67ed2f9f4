"""Data pipeline: discover a labelled image folder, validate and preprocess it once, split it and
store Parquet shards with a manifest (:func:`pomona.data.ingest.ingest`); stream the shards to
training workers with Ray Data (:mod:`pomona.data.loader`)."""
