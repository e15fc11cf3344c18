import sys

from artlens.cli import main

sys.exit(main())
