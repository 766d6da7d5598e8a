import sys

from paperwatch.cli import main

sys.exit(main())
