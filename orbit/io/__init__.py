"""Records and where they live: the Arrow schemas, keys, the home and the Parquet lake, the JSONL importer.

The bottom layer of the engine: it imports no other ``orbit`` package.
"""
