from __future__ import annotations

import os
import sys

from perfdash.run import ROOT, main

os.chdir(ROOT)
sys.exit(main())
