"""OTLP/HTTP metrics in: decoding, translation into perfdash's points, cumulative-to-delta
state, and the batch that goes the ingest path (docs/otlp.md)."""
