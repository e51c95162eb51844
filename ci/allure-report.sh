#!/usr/bin/env bash
# The HTML report of one run's Allure results with Allure 3 (npm package `allure`: Node only, no Java),
# keeping the trend: the history of the report published before, SITE/history.jsonl, gets this run
# appended, and the new report is written over SITE. Both CI pipelines (ci/github-actions.yml,
# ci/gitlab-ci.yml) call it once per backend.
#
#   bash ci/allure-report.sh RESULTS SITE     e.g. reports/allure-results site/process
#
# Environment: ALLURE_VERSION (default 3.18.0), REPORT_NAME (default "Chaos suite").
# scripts/report.sh does the same with Allure 2 (Java) for a report on your own machine.
set -euo pipefail
if (( $# != 2 )); then
  echo "allure-report.sh: usage: bash ci/allure-report.sh RESULTS_DIR SITE_DIR" >&2
  exit 2
fi
results=$1
site=$2
version=${ALLURE_VERSION:-3.18.0}
if ! ls "$results"/*-result.json >/dev/null 2>&1; then
  echo "allure-report.sh: no Allure results in $results; did behave run?" >&2
  exit 2
fi
command -v npx >/dev/null || { echo "allure-report.sh: Node.js (npx) is needed for Allure 3" >&2; exit 2; }
mkdir -p "$site"
site=$(cd "$site" && pwd)
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
# the history file lives inside the published site, so the next run finds it where it fetches the report
printf '{"name": "%s", "output": "%s", "historyPath": "%s/history.jsonl"}\n' \
  "${REPORT_NAME:-Chaos suite}" "$site" "$site" > "$config/allurerc.json"
npx --yes "allure@$version" generate --config "$config/allurerc.json" "$results" >&2
echo "$site/index.html ($(wc -l < "$site/history.jsonl") runs in the history)"
