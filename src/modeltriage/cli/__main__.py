import sys

from modeltriage.cli.main import main

sys.exit(main())
