import sys

from personsearch.cli.main import main

sys.exit(main())
