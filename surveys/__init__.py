"""Survey adapters: raw alert packets (bytes) in, the internal tables out (docs/architecture.md)."""
