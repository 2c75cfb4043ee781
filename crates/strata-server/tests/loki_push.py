"""Ships log lines to Strata's Loki push API with python-logging-loki, as an application would.
Usage: loki_push.py <url> <api key> <run id>. Exits non-zero if the handler failed to send."""
import logging
import sys

import logging_loki

url, key, run = sys.argv[1:4]
failed = []
handler = logging_loki.LokiHandler(
    url=f"{url}/loki/api/v1/push", tags={"app": "billing", "host": "web-loki"}, auth=("loki", key), version="1"
)
handler.handleError = lambda record: failed.append(sys.exc_info()[1])
app = logging.getLogger("billing")
app.setLevel(logging.INFO)
app.addHandler(handler)
app.error("invoice 7 failed %s", run, extra={"tags": {"customer": "acme"}})
for i in range(4):
    app.info("invoice %d paid %s", i, run)
if failed:
    print(repr(failed[0]), file=sys.stderr)
    sys.exit(1)
print("ok")
