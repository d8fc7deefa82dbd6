"""python -m imaging_ingest.cli"""

import sys

from imaging_ingest.cli import main

sys.exit(main())
