"""Ships log documents to Strata with Elasticsearch's Python client, as an application would, and
prints what the client made of the answers. Usage: es_bulk.py <url> <api key> <run id>"""
import datetime
import json
import sys

from elasticsearch import Elasticsearch, helpers

url, key, run = sys.argv[1:4]
es = Elasticsearch(url, api_key=key, request_timeout=10, max_retries=0)
info = es.info()
a_minute_ago = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).isoformat()
actions = (
    {
        "_index": "app-logs",
        "_id": f"{run}-{i}",
        "_source": {
            "@timestamp": a_minute_ago if i == 0 else None,
            "message": f"order {i} shipped {run}",
            "host": {"name": "web-es"},
            "log": {"level": "WARNING"},
            "order": i,
        },
    }
    for i in range(100)
)
ok, errors = helpers.bulk(es, actions, chunk_size=40)
refused = None
try:
    helpers.bulk(es, [{"_op_type": "delete", "_index": "app-logs", "_id": f"{run}-1"}])
except helpers.BulkIndexError as e:
    item = e.errors[0]["delete"]
    refused = [item["status"], item["error"]["type"]]
print(json.dumps({"version": info["version"]["number"], "ok": ok, "errors": errors, "refused": refused}))
