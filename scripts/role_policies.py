"""The IAM policy of each function's role in template.yaml, as AWS would see it after deploy.

Transforms the template with SAM's own translator (offline: no managed-policy lookup, dummy
code locations), then resolves the intrinsic functions of every function role's inline policies
for a test stack: parameters (the template's defaults, then --param overrides), pseudo
parameters (--account, --region) and the physical names the resources would get. Resources
named in the template (TableName, BucketName, ...) get that name; others get `<Stage>-<LogicalId>`.

Prints JSON:
  {"resources": {"<LogicalId>": {"type": ..., "name": ..., "arn": ...}},
   "functions": {"<binary>": {"logical_id": ..., "role": ..., "environment": {...},
                              "statements": [...]}}}
where <binary> is the function's BuildProperties.Binary (the Lambda binary's name; a second
function of the same binary is keyed by its logical id) and
statements are the role's inline statements with every intrinsic resolved.

With --moto-url (an IAM-enforcing moto, see scripts/moto.sh start-iam) and --moto-admin
KEY:SECRET, it also creates on that moto, for each function, an IAM user whose only policy is
its role's inline policy, and adds the user's keys to the output ("access_key", "secret_key").
moto authorises S3 and SQS calls against the bucket/object and queue ARNs, but DynamoDB, SNS,
KMS, Secrets Manager and the rest against the resource "*" only (moto 5.2:
moto/core/responses.py, `_determine_resource`): for those services the statement's resources
are widened to "*" in moto, so moto checks their actions and not which table or topic. The
harness checks DynamoDB's tables and indexes itself (crates/lambda-harness, DynamoDbIamProxy);
which SNS topic, KMS key or secret a call names is what this setup forgives.

Used by crates/lambda-harness to give each function binary an IAM user with exactly its role's
permissions, and by its Bedrock fake to authorise the calls moto lacks.
Run with the SAM venv's python (.tools/sam-venv, installed by scripts/template-checks.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from typing import Any

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

# Managed policies SAM attaches by ARN; the loader is only asked for names used in Policies.
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSLambdaVPCAccessExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}

NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::OpenSearchServerless::Collection": "Name",
    "AWS::Bedrock::KnowledgeBase": "Name",
}


class Loader:
    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


class NoValue:
    """AWS::NoValue: removes the list item or property it stands for."""


class Resolver:
    def __init__(self, template: dict, params: dict[str, str], account: str, region: str,
                 attributes: dict[str, str], endpoint: str) -> None:
        self.template = template
        self.account = account
        self.region = region
        self.endpoint = endpoint.rstrip("/")
        self.attributes = attributes
        self.params = {
            name: str(spec.get("Default", ""))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.params.update(params)
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"manuel-{self.params.get('Stage', 'test')}",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/manuel/test",
        }
        self.conditions: dict[str, bool] = {}
        self.names: dict[str, str] = {}

    # ------------------------------------------------------------------ resources
    def resource(self, logical_id: str) -> dict:
        return self.template["Resources"][logical_id]

    def name(self, logical_id: str) -> str:
        if logical_id not in self.names:
            resource = self.resource(logical_id)
            prop = NAME_PROPERTY.get(resource["Type"])
            value = resource.get("Properties", {}).get(prop) if prop else None
            self.names[logical_id] = (
                str(self.resolve(value)) if value is not None
                else f"{self.params.get('Stage', 'test')}-{logical_id}"
            )
        return self.names[logical_id]

    def ref(self, logical_id: str) -> str:
        if logical_id in self.params:
            return self.params[logical_id]
        if logical_id in self.pseudo:
            return self.pseudo[logical_id]
        if f"{logical_id}.Ref" in self.attributes:
            return self.attributes[f"{logical_id}.Ref"]
        kind = self.resource(logical_id)["Type"]
        if kind == "AWS::SQS::Queue":
            return f"{self.endpoint}/{self.account}/{self.name(logical_id)}"
        if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret"):
            return self.get_att(logical_id, "Arn")
        return self.name(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        key = f"{logical_id}.{attribute}"
        if key in self.attributes:
            return self.attributes[key]
        kind = self.resource(logical_id)["Type"]
        name = self.name(logical_id)
        region, account = self.region, self.account
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{region}:{account}:{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{region}:{account}:secret:{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{region}:{account}:key/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{name}:*",
            "AWS::OpenSearchServerless::Collection": f"arn:aws:aoss:{region}:{account}:collection/{name}",
        }
        if kind == "AWS::Bedrock::KnowledgeBase":
            kb_id = self.attributes.get(f"{logical_id}.KnowledgeBaseId", name)
            if attribute == "KnowledgeBaseId":
                return kb_id
            return f"arn:aws:bedrock:{region}:{account}:knowledge-base/{kb_id}"
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        return f"{name}.{attribute}"

    # ------------------------------------------------------------------ conditions
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    # ------------------------------------------------------------------ intrinsics
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if not isinstance(item, NoValue)]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return NoValue() if value == "AWS::NoValue" else self.ref(value)
            if key == "Fn::GetAtt":
                logical_id, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self.sub(value)
            if key == "Fn::If":
                name, if_true, if_false = value
                return self.resolve(if_true if self.condition(name) else if_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in value)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in value)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in value)
            if key == "Condition":
                return self.condition(value)
            if key == "Fn::Join":
                separator, items = value
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = value
                return str(self.resolve(text)).split(separator)
            if key == "Fn::GetAZs":
                return [f"{self.region}a", f"{self.region}b", f"{self.region}c"]
        resolved = {}
        for key, value in node.items():
            value = self.resolve(value)
            if not isinstance(value, NoValue):
                resolved[key] = value
        return resolved

    def sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else value
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if "." in token and token.split(".", 1)[0] in self.template["Resources"]:
                logical_id, attribute = token.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def transformed(template_path: str, params: dict[str, str]) -> dict:
    template = json.loads(json.dumps(cfn_yaml.load(template_path)))
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"
        # A layer built locally (the pdfium layer) has a folder as ContentUri, which the
        # translator refuses offline.
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    return transform(template, params, Loader())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True)
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint", default="https://sqs.us-east-1.amazonaws.com",
                        help="base URL of queue URLs (moto's URL in tests)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--attribute", action="append", default=[],
                        metavar="LOGICAL_ID.ATTRIBUTE=VALUE",
                        help="a resource attribute the test stack fixes (e.g. KnowledgeBase.KnowledgeBaseId)")
    parser.add_argument("--moto-url", help="an IAM-enforcing moto to create the function users on")
    parser.add_argument("--moto-admin", metavar="KEY:SECRET", help="keys of an admin user on it")
    args = parser.parse_args()
    params = dict(item.split("=", 1) for item in args.param)
    attributes = dict(item.split("=", 1) for item in args.attribute)

    # The translator reads the region from the environment (it would otherwise ask boto3).
    os.environ["AWS_DEFAULT_REGION"] = args.region
    sam_template = json.loads(json.dumps(cfn_yaml.load(args.template)))
    cfn = transformed(args.template, params)
    resolver = Resolver(cfn, params, args.account, args.region, attributes, args.endpoint)

    resources = {}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] in NAME_PROPERTY or resource["Type"] == "AWS::KMS::Key":
            resources[logical_id] = {
                "type": resource["Type"],
                "name": resolver.name(logical_id),
                "arn": resolver.get_att(logical_id, "Arn"),
            }
            if resource["Type"] == "AWS::DynamoDB::Table":
                properties = resolver.resolve(copy.deepcopy(resource["Properties"]))
                for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"):
                    resources[logical_id][key] = properties.get(key, [])

    functions = {}
    for logical_id, resource in sam_template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        function = cfn["Resources"][logical_id]["Properties"]
        role_id = function["Role"]["Fn::GetAtt"][0]
        role = cfn["Resources"][role_id]["Properties"]
        statements = []
        for policy in resolver.resolve(copy.deepcopy(role.get("Policies", []))):
            document = policy["PolicyDocument"]
            found = document["Statement"]
            statements.extend(found if isinstance(found, list) else [found])
        environment = resolver.resolve(
            copy.deepcopy(function.get("Environment", {}).get("Variables", {}))
        )
        # Two functions can run one binary (the query router, buffered and streaming): the
        # second is known by its logical id.
        key = binary if binary and binary not in functions else logical_id
        functions[key] = {
            "logical_id": logical_id,
            "role": role_id,
            "managed_policies": resolver.resolve(role.get("ManagedPolicyArns", [])),
            "environment": environment,
            "statements": statements,
        }
    if args.moto_url:
        create_users(args.moto_url, args.moto_admin, args.region, resolver.params.get("Stage", "test"),
                     functions)
    json.dump({"resources": resources, "functions": functions}, sys.stdout, indent=1)


# Services whose calls moto authorises against the real resource ARN.
MOTO_CHECKS_RESOURCES = {"s3", "sqs"}


# AWS authorises a DynamoDB transaction by its items' actions (PutItem, UpdateItem,
# ConditionCheckItem, ...: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html),
# moto by a "dynamodb:TransactWriteItems" / "TransactGetItems" action no policy needs in AWS. A
# role with item actions gets those in moto; the harness's DynamoDB proxy checks the items.
MOTO_TRANSACTION_ACTIONS = {
    "dynamodb:TransactWriteItems": {"dynamodb:putitem", "dynamodb:updateitem",
                                    "dynamodb:deleteitem", "dynamodb:conditioncheckitem"},
    "dynamodb:TransactGetItems": {"dynamodb:getitem"},
}


def for_moto(statement: dict) -> dict:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else list(actions)
    services = {action.split(":", 1)[0].lower() for action in actions}
    widened = dict(statement)
    if not services <= MOTO_CHECKS_RESOURCES:
        widened["Resource"] = "*"
    granted = {action.lower() for action in actions}
    for transaction, item_actions in MOTO_TRANSACTION_ACTIONS.items():
        if granted & item_actions:
            actions.append(transaction)
    widened["Action"] = actions
    return widened


def create_users(url: str, admin: str, region: str, stage: str, functions: dict) -> None:
    import boto3

    key, secret = admin.split(":", 1)
    iam = boto3.client("iam", endpoint_url=url, region_name=region,
                       aws_access_key_id=key, aws_secret_access_key=secret)
    for binary, function in functions.items():
        user = f"{binary}-{stage}"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="role",
            PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [for_moto(s) for s in function["statements"]],
            }),
        )
        created = iam.create_access_key(UserName=user)["AccessKey"]
        function["access_key"] = created["AccessKeyId"]
        function["secret_key"] = created["SecretAccessKey"]


if __name__ == "__main__":
    main()
