# The oracle for core/tests/cron_oracle.rs: Python's cronsim, which follows
# Debian cron's daylight-saving rules. Reads [[line, zone, start, count]...]
# as JSON on stdin, writes the next `count` fires after each start (Unix
# seconds; fires at or before the start, possible from inside a repeated
# hour, are passed over as Xene does).
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim

out = []
for line, zone, start, count in json.load(sys.stdin):
    it = CronSim(line, datetime.fromtimestamp(start, ZoneInfo(zone)))
    fires = []
    for _ in range(count * 4):
        if len(fires) == count:
            break
        ts = int(next(it).timestamp())
        if ts > start and (not fires or ts > fires[-1]):
            fires.append(ts)
    out.append(fires)
json.dump(out, sys.stdout)
