"""python -m imaging_ingest.cli"""

import sys

from . import main

sys.exit(main())
