#!/usr/bin/env bash
# Deploys the built stack with one of the parameter files.
#   scripts/deploy.sh parameters-production.json DeployerPrincipalArn=arn:aws:iam::…:role/… [Key=Value …]
# Run `make sam-build` first. The stack is called manuel-<Stage> unless STACK_NAME is set.
# SAM CLI 1.170 reads `--parameter-overrides file://…` only from .yaml/.yml/.toml files (its JSON
# reader is disabled), so the flat JSON file is handed over as YAML, which JSON already is.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${1:?usage: $0 PARAMETERS_FILE [Key=Value ...]}"
shift

stage="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["Stage"])' "$file")"
stack="${STACK_NAME:-manuel-$stage}"
mkdir -p "$root/.aws-sam"
overrides="$root/.aws-sam/$(basename "$file" .json).parameters.yaml"
cp "$file" "$overrides"

export PATH="$root/.tools/sam-venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
sam deploy \
    --template-file "$root/.aws-sam/build/template.yaml" \
    --stack-name "$stack" \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
    --resolve-s3 \
    --no-fail-on-empty-changeset \
    --parameter-overrides "file://$overrides" "$@"
