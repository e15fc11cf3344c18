import sys

from embeddings.export import main
from trainer.cli import run_cli

sys.exit(run_cli(main))
