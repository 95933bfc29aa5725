"""The terminal UI (Textual) over the core: compose, preview with provenance, diff, lint, profiles, review."""
