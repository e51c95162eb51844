#!/usr/bin/env bash
# Generate the static HTML report of the last run with the Allure command-line tool.
#
#   behave --tags=@chaos        # writes reports/allure-results (and reports/junit)
#   scripts/report.sh           # writes reports/allure-report/index.html
#   scripts/report.sh --open    # ... and serves it on 127.0.0.1 (allure open)
#
# The tool comes from the npm registry (package allure-commandline, pinned below) and is
# installed once into reports/.tools; it needs Java (8 or later) on the PATH. The previous
# report's history/ folder is copied into the results before generating, so the report's
# trend charts grow from run to run.
#
# Environment: ALLURE_RESULTS (default reports/allure-results), ALLURE_REPORT (default
# reports/allure-report), ALLURE_TOOLS (default reports/.tools), ALLURE_VERSION (default 2.46.1).
set -euo pipefail

cd "$(dirname "$0")/.."
results=${ALLURE_RESULTS:-reports/allure-results}
report=${ALLURE_REPORT:-reports/allure-report}
tools=${ALLURE_TOOLS:-reports/.tools}
version=${ALLURE_VERSION:-2.46.1}
allure="$tools/node_modules/.bin/allure"

if ! command -v java >/dev/null 2>&1; then
    echo "report.sh: Java is needed by the Allure command-line tool; install a JRE (e.g. openjdk-17-jre-headless)" >&2
    exit 2
fi
if ! ls "$results"/*-result.json >/dev/null 2>&1; then
    echo "report.sh: no results in $results; run behave first (behave --tags=@chaos)" >&2
    exit 2
fi
if [ ! -x "$allure" ] || ! "$allure" --version 2>/dev/null | grep -qx "$version"; then
    echo "report.sh: installing allure-commandline@$version from the npm registry into $tools" >&2
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error "allure-commandline@$version" >&2
fi

# trends: the history of the previous report becomes part of this run's results
if [ -d "$report/history" ]; then
    rm -rf "$results/history"
    cp -R "$report/history" "$results/history"
fi

"$allure" generate --clean --report-dir "$report" "$results" >&2
echo "$report/index.html"

if [ "${1:-}" = "--open" ]; then
    exec "$allure" open --host 127.0.0.1 --port "${ALLURE_PORT:-0}" "$report"
fi
