#!/bin/sh
# Run the aeolusd integration tests with Node's built-in test runner.
#
#   tests/integration/run.sh [node --test options] [test files...]
#
# Environment:
#   AEOLUSD                 daemon to test (default: src/aeolusd)
#   AEOLUS_TEST_WRAPPER     command prefix for the daemon (e.g. "valgrind -q --error-exitcode=99")
#   AEOLUS_TEST_SERVER_CMD  test a reference server instead (port appended to the command)
#   AEOLUS_TEST_CONCURRENCY number of test files run at once (default 1)
#
# Exits non-zero if any test fails.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# resolve a relative AEOLUSD against the caller's directory
if [ -n "${AEOLUSD:-}" ]; then
    case "$AEOLUSD" in
        /*) ;;
        *) AEOLUSD="$(pwd)/$AEOLUSD" ;;
    esac
    export AEOLUSD
fi

if ! command -v node >/dev/null 2>&1; then
    echo "run.sh: node (>= 20) is required" >&2
    exit 1
fi

if [ ! -d "$root/tests/node_modules/ws" ] || [ ! -d "$root/tests/node_modules/socket.io-client" ]; then
    echo "run.sh: installing test dependencies (npm ci in tests/)" >&2
    (cd "$root/tests" && npm ci --no-audit --no-fund >&2)
fi

cd "$root"
# default to the whole directory unless test files were named
have_files=no
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) have_files=yes ;;
    esac
done
if [ "$have_files" = no ]; then
    set -- "$@" tests/integration/
fi
exec node --test --test-reporter=tap \
    --test-concurrency="${AEOLUS_TEST_CONCURRENCY:-1}" "$@"
