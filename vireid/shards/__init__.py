"""Records → WebDataset tar shards + DALI index files + manifest.json (and their checks)."""
