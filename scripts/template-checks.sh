#!/usr/bin/env bash
# Lints template.yaml offline: `sam validate --lint`, cfn-lint, checkov, and runs the inline
# first-sync custom resource against stand-ins (scripts/check_first_sync.py).
#   scripts/template-checks.sh            installs the tools once (pinned), runs the three checks
#   scripts/template-checks.sh install    only installs the tools
#   scripts/template-checks.sh sam-build  `sam build` of the six functions (slow: release arm64
#                                         cross-builds; needs the aarch64 Rust target)
# SAM, cfn-lint and cargo-lambda (which brings zig) share .tools/sam-venv because `sam build`
# calls cargo-lambda, which finds zig through the first python3 on PATH. checkov lives in its
# own venv: its boto3 pins clash with SAM's.
# The checkov checks skipped are the keys of Metadata.ManuelCheckovSkips in template.yaml, each
# with the reason it does not apply; a check is never skipped without one.
set -euo pipefail

SAM_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
CARGO_LAMBDA_VERSION="1.9.2"
CHECKOV_VERSION="3.3.30"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sam_venv="$root/.tools/sam-venv"
checkov_venv="$root/.tools/checkov-venv"
template="$root/template.yaml"
# The product runs in eu-west-1 (the predecessor's region): region-specific checks are for it.
region="${AWS_REGION:-eu-west-1}"

# SAM would otherwise try to send usage data; nothing here needs the network besides pip.
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="$region"

installed() {
    local venv="$1" package="$2" version="$3"
    "$venv/bin/python" - "$package" "$version" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version(sys.argv[1]) != sys.argv[2])
EOF
}

install() {
    if ! { installed "$sam_venv" aws-sam-cli "$SAM_VERSION" \
        && installed "$sam_venv" cfn-lint "$CFN_LINT_VERSION" \
        && installed "$sam_venv" cargo-lambda "$CARGO_LAMBDA_VERSION"; }; then
        echo "template-checks: installing SAM CLI, cfn-lint and cargo-lambda into $sam_venv" >&2
        [[ -x "$sam_venv/bin/python" ]] || python3 -m venv "$sam_venv"
        "$sam_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
            "cargo-lambda==$CARGO_LAMBDA_VERSION"
    fi
    if ! installed "$checkov_venv" checkov "$CHECKOV_VERSION"; then
        echo "template-checks: installing checkov into $checkov_venv" >&2
        [[ -x "$checkov_venv/bin/python" ]] || python3 -m venv "$checkov_venv"
        "$checkov_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "checkov==$CHECKOV_VERSION"
    fi
}

checkov_skips() {
    "$sam_venv/bin/python" - "$template" <<'EOF'
import sys
from cfnlint.decode import cfn_yaml

skips = cfn_yaml.load(sys.argv[1]).get("Metadata", {}).get("ManuelCheckovSkips", {})
for check, reason in skips.items():
    if not str(reason).strip():
        sys.exit(f"template.yaml: checkov skip {check} has no justification")
print(",".join(skips))
EOF
}

check() {
    install
    export PATH="$sam_venv/bin:$PATH"
    echo "== sam validate --lint"
    sam validate --lint --template-file "$template" --region "$region"
    echo "== cfn-lint"
    cfn-lint --regions "$region" -- "$template"
    echo "cfn-lint: no findings"
    echo "== first-sync custom resource (stubbed AWS)"
    "$sam_venv/bin/python" "$root/scripts/check_first_sync.py" "$template"
    echo "== streaming integration (SAM transform)"
    "$sam_venv/bin/python" "$root/scripts/check_streaming.py" "$template"
    echo "== vector stores (both VectorStore values, SAM transform)"
    "$sam_venv/bin/python" "$root/scripts/check_vector_store.py" "$template"
    echo "== checkov"
    local skips
    skips="$(checkov_skips)"
    "$checkov_venv/bin/checkov" --quiet --compact --skip-download --framework cloudformation \
        --skip-check "$skips" -f "$template"
}

sam_build() {
    install
    export PATH="$sam_venv/bin:$PATH"
    if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
        echo "sam-build: adding the Rust target aarch64-unknown-linux-gnu (a download)" >&2
        rustup target add aarch64-unknown-linux-gnu || {
            echo "sam-build: cannot add the aarch64 target; the arm64 functions cannot be built here" >&2
            exit 1
        }
    fi
    cd "$root"
    # The PdfiumLayer's content (libpdfium.so for arm64).
    "$root/scripts/setup-pdfium-layer.sh"
    sam build --template-file "$template" --build-dir "$root/.aws-sam/build"
}

case "${1:-check}" in
    install) install ;;
    check) check ;;
    sam-build) sam_build ;;
    *)
        echo "usage: $0 [check|install|sam-build]" >&2
        exit 2
        ;;
esac
