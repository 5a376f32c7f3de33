"""Checks template.yaml's two knowledge-base stores, as CloudFormation would create each.

For VectorStore=S3Vectors and VectorStore=OpenSearchServerless, the SAM-transformed template,
with its conditions evaluated, must:
- create only that store's resources (an S3 Vectors bucket and index, or an OpenSearch
  Serverless collection, index and policies) and a knowledge base of that storage type;
- for S3 Vectors: keep Bedrock's AMAZON_BEDROCK_TEXT and AMAZON_BEDROCK_METADATA out of the
  filterable metadata (over 2 KB a vector, ingestion would fail part-way and the index would
  have to be recreated), with the embedding models' 1024 dimensions and cosine distance;
- let the knowledge base's role reach only its store;
- tell every function which store it is (VECTOR_STORE), so retrieval asks for a search the
  store has (SEMANTIC on S3 Vectors, which refuses HYBRID);
- need DeployerPrincipalArn only for OpenSearch (the template's rule);
and a stack deployed with parameters/dev.yaml must cost under $5 a month while idle (the
resources billed by the hour or month whatever the traffic, at list prices).

Usage: check_vector_store.py template.yaml   (with the SAM venv's python)
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import role_policies  # noqa: E402

STORE_TYPES = {
    "S3Vectors": {"AWS::S3Vectors::VectorBucket", "AWS::S3Vectors::Index"},
    "OpenSearchServerless": {
        "AWS::OpenSearchServerless::Collection",
        "AWS::OpenSearchServerless::Index",
        "AWS::OpenSearchServerless::SecurityPolicy",
        "AWS::OpenSearchServerless::AccessPolicy",
    },
}
STORAGE_TYPE = {"S3Vectors": "S3_VECTORS", "OpenSearchServerless": "OPENSEARCH_SERVERLESS"}
ROLE_ACTION = {"S3Vectors": "s3vectors:", "OpenSearchServerless": "aoss:"}


def check(template_path: str, store: str) -> list[str]:
    params = {"Stage": "dev", "VectorStore": store}
    if store == "OpenSearchServerless":
        params["DeployerPrincipalArn"] = "arn:aws:iam::123456789012:user/deployer"
    template = role_policies.transformed(template_path, params)
    resolver = role_policies.Resolver(template, params, "123456789012", "eu-west-1", {}, "")
    present = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    failures = []
    types = {resource["Type"] for resource in present.values()}
    for other, kinds in STORE_TYPES.items():
        created = types & kinds
        if other == store and created != kinds:
            failures.append(f"missing its store's resources: {sorted(kinds - created)}")
        if other != store and created:
            failures.append(f"also creates {other} resources: {sorted(created)}")
    kb = resolver.resolve(present["KnowledgeBase"]["Properties"])
    if kb["StorageConfiguration"]["Type"] != STORAGE_TYPE[store]:
        failures.append(f"knowledge base storage {kb['StorageConfiguration']['Type']}")
    if store == "S3Vectors":
        index = resolver.resolve(present["ChunkVectorIndex"]["Properties"])
        keys = set(index.get("MetadataConfiguration", {}).get("NonFilterableMetadataKeys", []))
        if not {"AMAZON_BEDROCK_TEXT", "AMAZON_BEDROCK_METADATA"} <= keys:
            failures.append(f"non-filterable metadata keys {sorted(keys)}")
        if keys & {"user_id", "manual_id"}:
            failures.append("user_id and manual_id must stay filterable")
        if (index.get("Dimension"), index.get("DistanceMetric")) != (1024, "cosine"):
            failures.append(f"index {index.get('Dimension')} dimensions, {index.get('DistanceMetric')}")
    role = resolver.resolve(present["KnowledgeBaseRole"]["Properties"])
    actions = json.dumps(role["Policies"])
    for other, prefix in ROLE_ACTION.items():
        if (prefix in actions) != (other == store):
            failures.append(f"knowledge-base role and {prefix}* actions: {other == store} expected")
    for logical_id, resource in present.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resolver.resolve(resource["Properties"].get("Environment", {})).get("Variables", {})
        if "KNOWLEDGE_BASE_ID" in variables and variables.get("VECTOR_STORE") != store:
            failures.append(f"{logical_id}: VECTOR_STORE={variables.get('VECTOR_STORE')}")
    rule = template.get("Rules", {}).get("DeployerIsNamed", {})
    if resolver.resolve(rule.get("RuleCondition", True)) != (store == "OpenSearchServerless"):
        failures.append("DeployerPrincipalArn must be required exactly for OpenSearch")
    return failures


# Resources billed by the hour or month whether or not anyone uses the stack, and what each
# costs (USD a month, list prices; README, "Cost on paper").
BILLED_WHILE_IDLE = {
    "AWS::KMS::Key": 1.00,
    "AWS::SecretsManager::Secret": 0.40,
    "AWS::CloudWatch::Dashboard": 3.00,
    "AWS::CloudWatch::Alarm": 0.10,
    "AWS::OpenSearchServerless::Collection": 175.00,
    "AWS::EC2::NatGateway": 33.00,
    "AWS::EC2::VPCEndpoint": 7.50,
    "AWS::ElastiCache::ReplicationGroup": 12.00,
    "AWS::WAFv2::WebACL": 5.00,
}


def idle_dev_cost(template_path: str) -> float:
    """The fixed monthly cost of the resources a stack deployed with parameters/dev.yaml has."""
    from cfnlint.decode import cfn_yaml

    dev = os.path.join(os.path.dirname(os.path.abspath(template_path)), "parameters", "dev.yaml")
    params = {key: str(value) for key, value in cfn_yaml.load(dev).items()}
    template = role_policies.transformed(template_path, params)
    resolver = role_policies.Resolver(template, params, "123456789012", "eu-west-1", {}, "")
    total = 0.0
    for resource in template["Resources"].values():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        total += BILLED_WHILE_IDLE.get(resource["Type"], 0.0)
    return total


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    failed = False
    idle = idle_dev_cost(sys.argv[1])
    if idle >= 5.0:
        failed = True
        print(f"an idle dev stack (parameters/dev.yaml) costs ${idle:.2f} a month: over $5", file=sys.stderr)
    else:
        print(f"an idle dev stack (parameters/dev.yaml): ${idle:.2f} a month in resources billed while idle")
    for store in STORE_TYPES:
        failures = check(sys.argv[1], store)
        if failures:
            failed = True
            print(f"VectorStore={store}:\n  " + "\n  ".join(failures), file=sys.stderr)
        else:
            print(f"VectorStore={store}: only its store's resources, a {STORAGE_TYPE[store]} knowledge base, "
                  f"its role and every function's VECTOR_STORE agree")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
