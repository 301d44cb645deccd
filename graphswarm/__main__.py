import sys

from graphswarm.cli import main

sys.exit(main())
