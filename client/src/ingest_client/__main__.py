"""python -m ingest_client send --endpoint URL ... < events.ndjson"""

import sys

from ingest_client.cli import main

sys.exit(main())
