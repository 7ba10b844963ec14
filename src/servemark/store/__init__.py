"""Run directories: layout, incremental writers, tolerant readers."""
