import sys

from trainer.cli import run_cli
from trainer.train import main

sys.exit(run_cli(main))
