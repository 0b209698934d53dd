"""Checks for the Python client scripts (python_client.py, python_homelette.py).

check(name, fn) runs fn, prints 'ok   name' or 'FAIL name' with the
traceback, and goes on; summary() prints 'N passed, N failed' and returns
the script's exit status (1 on any failure or when nothing ran).
"""

import sys
import traceback

results = []


def check(name, fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - report every failure and go on
        results.append((name, False))
        print(f"FAIL {name}")
        traceback.print_exc(file=sys.stdout)
    else:
        results.append((name, True))
        print(f"ok   {name}")
    sys.stdout.flush()


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def summary():
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1
