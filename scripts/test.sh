#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, the conformance suite on
# the embedded store and on DynamoDB Local, the DynamoDB call-count tests, CLI tests, doctests.
# Every workspace crate is covered by --workspace (zae-limiter-proxy's tests need no setup).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

features=(--features zae-limiter/dynamodb-local-tests,zae-limiter/http,zae-limiter-cli/dynamodb-local-tests,zae-limiter-infra/dynamodb-local-tests,zae-limiter-tower/dynamodb-local-tests)

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
echo "== the embedded store alone (no AWS SDK): cargo check / tests --no-default-features" >&2
cargo check -p zae-limiter --no-default-features
cargo nextest run -p zae-limiter --no-default-features --lib --test embedded --test observability --test usage
echo "== build tests" >&2
cargo nextest run --workspace "${features[@]}" --no-run
echo "== cfn-lint on rendered templates" >&2
scripts/moto.sh --install
scripts/cfn-lint.sh
echo "== tests (embedded store + DynamoDB Local + moto for STS, CloudFormation, S3, Lambda)" >&2
scripts/moto.sh --install
scripts/dynamodb-local.sh scripts/moto.sh cargo nextest run --workspace "${features[@]}" --no-fail-fast
echo "== doctests" >&2
cargo test --workspace --doc "${features[@]}"
