"""The workbench's screens: compose (the main one) and review."""
