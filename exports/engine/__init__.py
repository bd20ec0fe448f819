"""The export engine: source batches → Arrow types → ZSTD Parquet files → manifest."""
