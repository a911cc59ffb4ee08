"""coldchain ingest."""
