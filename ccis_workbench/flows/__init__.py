"""The use cases both faces call: each hand-off of the pipeline written once (no argparse, textual or libvirt
at import time)."""
