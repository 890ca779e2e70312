#!/usr/bin/env bash
# Render the CloudFormation template for the IAM behaviour matrix and the main option
# combinations with the debug CLI and validate each with cfn-lint (installed with moto into
# .cache/moto-venv; scripts/moto.sh --install). Warnings fail too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lint=".cache/moto-venv/bin/cfn-lint"
[[ -x "$lint" ]] || scripts/moto.sh --install
cargo build -q -p zae-limiter-cli
bin=target/debug/zae-limiter
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

role=arn:aws:iam::123456789012:role/MyLambdaRole
variants=(
  "default|"
  "no-iam|--no-iam"
  "no-iam-external-role|--no-iam --aggregator-role-arn $role"
  "external-role|--aggregator-role-arn $role"
  "create-iam-roles|--create-iam-roles --permission-boundary ServiceBoundary --role-name-format svc-{} --policy-name-format pol-{}"
  "production|--pitr-recovery-days 7 --log-retention-days 90 --alarm-sns-topic arn:aws:sns:us-east-1:123456789012:alerts --enable-deletion-protection --enable-tracing --tag team=core"
  "minimal|--no-aggregator --no-alarms --no-audit-archival"
)
files=()
for v in "${variants[@]}"; do
  name="${v%%|*}"
  # shellcheck disable=SC2086 # the flags are words
  "$bin" --name prod-limiter cfn-template ${v#*|} >"$out/$name.json"
  files+=("$out/$name.json")
done
# the declarative-limits stack of the example manifest
"$bin" --name prod-limiter limits cfn-template -f docs/limits.example.yaml >"$out/limits.yaml"
files+=("$out/limits.yaml")
echo "cfn-lint on ${#files[@]} rendered templates" >&2
"$lint" --format parseable "${files[@]}"
echo "cfn-lint: clean" >&2
