"""The command-line face of the workbench (argparse; imports the UI and backends only when a command needs them)."""
