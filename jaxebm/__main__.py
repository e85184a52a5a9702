import sys

from jaxebm.cli import main

sys.exit(main())
