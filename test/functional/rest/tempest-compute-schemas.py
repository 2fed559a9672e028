"""Checks compute answers against Tempest's response schemas (Debian's tempest 33).

Reads one JSON object per line on stdin: {"module": "servers", "schema":
"get_server", "version": "2.47", "status": 200, "headers": {...}, "body": ...}.
The schema is the one Tempest's clients use at that microversion: the module
of the highest api_schema/response/compute/vX_Y directory at or below the
version that defines it (Tempest's clients map version ranges to the same
modules). Validation is Tempest's own (RestClient.validate_response:
status code, body with additionalProperties false, headers).
Prints one JSON line per input: {"ok": true} or {"ok": false, "error": ...}.
"""
import importlib
import json
import os
import sys

import tempest.lib.api_schema.response.compute as compute_schemas
from tempest.lib.common import rest_client

ROOT = os.path.dirname(compute_schemas.__file__)
DIRS = sorted(
    (tuple(int(x) for x in d[1:].split('_')), d)
    for d in os.listdir(ROOT) if d.startswith('v2_')
)


class Resp(dict):
    def __init__(self, status, headers):
        super().__init__({k.lower(): v for k, v in headers.items()})
        self.status = status


def schema_for(module, name, version):
    want = tuple(int(x) for x in version.split('.'))
    for ver, d in reversed(DIRS):
        if ver > want or not os.path.exists(os.path.join(ROOT, d, module + '.py')):
            continue
        mod = importlib.import_module('tempest.lib.api_schema.response.compute.%s.%s' % (d, module))
        if hasattr(mod, name):
            return getattr(mod, name), d
    raise LookupError('no schema %s.%s at or below %s' % (module, name, version))


for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    try:
        schema, where = schema_for(case['module'], case['schema'], case['version'])
        body = case.get('body')
        rest_client.RestClient.validate_response(schema, Resp(case['status'], case.get('headers', {})), body)
        print(json.dumps({'ok': True, 'schema': '%s/%s.%s' % (where, case['module'], case['schema'])}))
    except Exception as e:  # noqa: BLE001 - each failure is reported, not raised
        # The first line says what failed; the rest repeats the schema and the body.
        print(json.dumps({'ok': False, 'error': '%s: %s' % (type(e).__name__, ' '.join(str(e).split())[:400])}))
    sys.stdout.flush()
