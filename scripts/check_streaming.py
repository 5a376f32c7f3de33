"""Checks the SAM-transformed template.yaml for the streaming route, as API Gateway will run it.

SAM drops an `Api` event's `ResponseTransferMode` it does not know without a warning, and a
buffered integration in front of a function that streams (or the reverse) breaks every
response, so this checks what the transform produced:
- POST /api/query/stream is integrated in STREAM mode through InvokeWithResponseStream
  (`2021-11-15/.../response-streaming-invocations`) with QueryStreamFunction;
- every other route is buffered (`2015-03-31/.../invocations`);
- a function runs the streaming runtime (`RESPONSE_TRANSFER_MODE=STREAM`) exactly when its
  routes are streamed;
- the streaming function may call ConverseStream (bedrock:InvokeModelWithResponseStream).

Usage: check_streaming.py template.yaml   (with the SAM venv's python)
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import role_policies  # noqa: E402

STREAMED = {("/api/query/stream", "post")}


def function_of(uri) -> str:
    """The logical id in `.../functions/${Name.Arn}/...`."""
    text = json.dumps(uri)
    start = text.index("/functions/${") + len("/functions/${")
    return text[start:text.index(".Arn}", start)]


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    template = role_policies.transformed(
        sys.argv[1],
        {"Stage": "dev", "DeployerPrincipalArn": "arn:aws:iam::123456789012:user/deployer"},
    )
    resources = template["Resources"]
    paths = resources["ManuelApi"]["Properties"]["Body"]["paths"]
    failures = []
    mode_of_function: dict[str, set[str]] = {}
    for path, operations in paths.items():
        for method, operation in operations.items():
            integration = operation.get("x-amazon-apigateway-integration")
            if not integration or method == "options":
                continue
            uri = json.dumps(integration["uri"])
            mode = integration.get("responseTransferMode", "BUFFERED")
            function = function_of(integration["uri"])
            mode_of_function.setdefault(function, set()).add(mode)
            if (path, method) in STREAMED:
                if mode != "STREAM" or "2021-11-15" not in uri or "response-streaming-invocations" not in uri:
                    failures.append(f"{method.upper()} {path} is not streamed: {integration}")
            elif mode != "BUFFERED" or "2015-03-31" not in uri:
                failures.append(f"{method.upper()} {path} should be buffered: {integration}")
    if mode_of_function.get("QueryStreamFunction") != {"STREAM"}:
        failures.append(f"QueryStreamFunction serves {mode_of_function.get('QueryStreamFunction')}")
    for function, modes in mode_of_function.items():
        variables = resources[function]["Properties"].get("Environment", {}).get("Variables", {})
        streams = variables.get("RESPONSE_TRANSFER_MODE") == "STREAM"
        if len(modes) != 1 or streams != (modes == {"STREAM"}):
            failures.append(
                f"{function}: routes {sorted(modes)} but RESPONSE_TRANSFER_MODE={variables.get('RESPONSE_TRANSFER_MODE')}"
            )
    role = resources["QueryStreamFunctionRole"]["Properties"]
    actions = json.dumps(role.get("Policies", []))
    if "bedrock:InvokeModelWithResponseStream" not in actions:
        failures.append("QueryStreamFunction's role cannot call ConverseStream")
    if failures:
        sys.exit("streaming integration:\n  " + "\n  ".join(failures))
    streamed = ", ".join(f"{m.upper()} {p}" for p, m in sorted(STREAMED))
    print(f"streaming integration: {streamed} streamed by QueryStreamFunction; every other route buffered")


if __name__ == "__main__":
    main()
