"""Runs the knowledge base's first-sync custom resource (template.yaml, InlineCode) offline with
stand-ins for boto3's bedrock-agent client and cfnresponse: a completed job reports SUCCESS, a
failed one FAILED with its reasons, Delete and an unchanged Update report SUCCESS without a job.
Part of scripts/template-checks.sh (the SAM venv's python, which has cfn-lint's YAML loader)."""

import sys
import time
import types

from cfnlint.decode import cfn_yaml

sent = []
cfnresponse = types.ModuleType("cfnresponse")
cfnresponse.SUCCESS, cfnresponse.FAILED = "SUCCESS", "FAILED"
cfnresponse.send = lambda event, context, status, data, physical_id, reason=None: sent.append(
    (status, data, physical_id, reason))
sys.modules["cfnresponse"] = cfnresponse
started = []


def agent(statuses, reasons=()):
    states = iter(statuses)

    class Agent:
        def start_ingestion_job(self, **request):
            started.append(request)
            return {"ingestionJob": {"status": "STARTING", "ingestionJobId": "J"}}

        def get_ingestion_job(self, **request):
            return {"ingestionJob": {"status": next(states), "ingestionJobId": "J",
                                     "failureReasons": list(reasons)}}

    return Agent()


boto3 = types.ModuleType("boto3")
sys.modules["boto3"] = boto3
time.sleep = lambda seconds: None

template = cfn_yaml.load(sys.argv[1])
code = template["Resources"]["KnowledgeBaseFirstSyncFunction"]["Properties"]["InlineCode"]
namespace = {}
exec(code, namespace)  # noqa: S102 - the template's own code, run against stand-ins
handler = namespace["handler"]


class Context:
    def get_remaining_time_in_millis(self):
        return 600_000


props = {"KnowledgeBaseId": "KB", "DataSourceId": "DS"}
boto3.client = lambda name: agent(["IN_PROGRESS", "COMPLETE"])
handler({"RequestType": "Create", "ResourceProperties": props}, Context())
assert sent[-1][0] == "SUCCESS" and sent[-1][1]["Status"] == "COMPLETE", sent[-1]
assert started[-1]["knowledgeBaseId"] == "KB" and started[-1]["dataSourceId"] == "DS", started

boto3.client = lambda name: agent(["FAILED"], ["AccessDenied on the bucket"])
handler({"RequestType": "Create", "ResourceProperties": props}, Context())
assert sent[-1][0] == "FAILED" and "AccessDenied" in sent[-1][3], sent[-1]

jobs = len(started)
for request in ("Delete", "Update"):
    handler({"RequestType": request, "PhysicalResourceId": "KB/DS", "ResourceProperties": props},
            Context())
    assert sent[-1][0] == "SUCCESS", sent[-1]
assert len(started) == jobs, "Delete or an unchanged Update started a job"
print("first-sync custom resource: create, failure, delete and update behave")
