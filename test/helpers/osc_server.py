"""One long-lived python-openstackclient for a test file (test/helpers/osc.ts).

`/usr/bin/openstack` is `sys.exit(OpenStackShell().run(argv))`; Python's
start-up and the client's imports cost ~1 s of CPU per process. This runs the
same call per command in one interpreter that imported the shell once: one
JSON request a line on stdin ({argv, env, cwd}), one JSON answer a line on
fd 3 ({code, stdout, stderr}). Every command gets a fresh OpenStackShell (so a
new option parser, cloud config, keystoneauth session and client manager), its
own environment, captured stdout/stderr and an empty stdin, and everything the
client keeps between calls in a process is put back afterwards: the API
clients osc-lib caches on the ClientManager class, the logging handlers and
levels, the warning filters, openstackclient's per-API modules as imported
(the microversions they remember, the API versions they drop), the SDK's
URL-name cache.
"""
import copy
import gc
import io
import json
import logging
import os
import sys
import traceback
import types
import warnings

# The program's name, as the process has it: cliff takes App.NAME from it at import (usage lines read `openstack …`).
sys.argv[0] = '/usr/bin/openstack'

from osc_lib import clientmanager as osc_clientmanager
from openstackclient.common import clientmanager
from openstackclient import shell as osc_shell
import openstack.proxy

# The environment the client's modules read at import (clouds.yaml search path: cwd, $HOME).
KEY = (os.getcwd(), os.environ.get('HOME', ''))


def _snapshot(mod):
    """What a plugin module binds, and the contents of its dicts, lists and sets."""
    return {k: (v, copy.copy(v) if isinstance(v, (dict, list, set)) else None) for k, v in vars(mod).items() if not k.startswith('__')}


# openstackclient's per-API modules change themselves as they make clients: compute's and volume's
# remember the microversion asked for (a global), volume's deletes API_VERSIONS['1'] when cinderclient
# has no v1 (a second delete is a KeyError). Each command starts from the modules as imported.
PLUGIN_STATE = [(mod, _snapshot(mod)) for mod in clientmanager.PLUGIN_MODULES]


def _reset_module_state():
    # The API clients: ClientCache descriptors on the ClientManager class keep the first handle made
    # (its session, token, endpoint) for the life of the process.
    for cls in clientmanager.ClientManager.__mro__:
        for value in vars(cls).values():
            if isinstance(value, osc_clientmanager.ClientCache):
                value._handle = None
    for mod, snap in PLUGIN_STATE:
        d = vars(mod)
        for k in [k for k in d if not k.startswith('__') and k not in snap and not isinstance(d[k], types.ModuleType)]:
            del d[k]
        for k, (v, contents) in snap.items():
            d[k] = v
            if isinstance(v, dict):
                v.clear()
                v.update(contents)
            elif isinstance(v, list):
                v[:] = contents
            elif isinstance(v, set):
                v.clear()
                v.update(contents)
    openstack.proxy.Proxy._extract_name.cache_clear()


def _close_session(shell):
    cm = getattr(shell, 'client_manager', None)
    sess = getattr(getattr(cm, 'session', None), 'session', None) if cm is not None else None
    if sess is not None and hasattr(sess, 'close'):
        try:
            sess.close()
        except Exception:  # noqa: BLE001 - a close that fails leaks sockets only until the gc below
            pass


def run(argv, env, cwd):
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    root = logging.getLogger('')
    saved_handlers = list(root.handlers)
    saved_levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    saved_root_level = root.level
    saved_filters = list(warnings.filters)
    out = io.TextIOWrapper(io.BytesIO(), encoding='utf-8', newline='')
    err = io.TextIOWrapper(io.BytesIO(), encoding='utf-8', newline='')
    shell = None
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(''), out, err
        try:
            shell = osc_shell.OpenStackShell()
            code = shell.run(argv)
        except SystemExit as e:  # argparse on bad usage, --help, --version
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if e.code is not None and not isinstance(e.code, int):
                err.write(f'{e.code}\n')
        except BaseException:  # noqa: BLE001 - what the process would print before dying
            err.write(traceback.format_exc())
            code = 1
        for stream in (out, err):
            stream.flush()
        return {
            'code': code if isinstance(code, int) else (0 if code is None else 1),
            'stdout': out.buffer.getvalue().decode('utf-8', 'replace'),
            'stderr': err.buffer.getvalue().decode('utf-8', 'replace'),
        }
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        _close_session(shell)
        for h in list(root.handlers):
            if h not in saved_handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(saved_root_level)
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(saved_levels.get(name, logging.NOTSET))
        warnings.filters[:] = saved_filters
        _reset_module_state()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        del shell
        gc.collect()


def main():
    answers = os.fdopen(3, 'w', encoding='utf-8')
    # Anything written to the real stdout outside a command (a C library, a stray print) goes to stderr.
    os.dup2(2, 1)
    answers.write(json.dumps({'ready': True}) + '\n')
    answers.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if (req['cwd'], req['env'].get('HOME', '')) != KEY:
            answer = {'code': 1, 'stdout': '', 'stderr': f'osc_server: started for cwd/HOME {KEY}, asked to run in {(req["cwd"], req["env"].get("HOME", ""))}\n'}
        else:
            answer = run(req['argv'], req['env'], req['cwd'])
        answers.write(json.dumps(answer) + '\n')
        answers.flush()


if __name__ == '__main__':
    main()
