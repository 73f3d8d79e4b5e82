#!/bin/sh
# The reports box: only the reports queue, one task at a time.
set -e
cd "$(dirname "$0")/.."
exec celery -A proj worker -l INFO -Q reports -c 1 -n reports@%h
