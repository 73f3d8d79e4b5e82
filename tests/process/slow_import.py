"""A module that is slow to import (it sleeps ``PROC_SLOW_IMPORT_S`` seconds), for child start tests."""

import os
import time

time.sleep(float(os.environ["PROC_SLOW_IMPORT_S"]))
