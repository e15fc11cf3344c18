"""artlens: find the wrong labels in a painting collection. The command is `artlens` (artlens/cli.py)."""
