#!/usr/bin/env bash
# Checks template.yaml offline: sam validate --lint, cfn-lint, and a full SAM transform
# (which catches what validate does not, e.g. an intrinsic where SAM expects a map) with
# the event source mapping's properties asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}" SAM_CLI_TELEMETRY=0
sam validate --lint --template template.yaml
cfn-lint template.yaml
python3 - <<'PY'
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open("template.yaml").read())
# The transform wants an S3 code location; sam build puts one there.
template["Resources"]["RelayFunction"]["Properties"]["CodeUri"] = "s3://bucket/key"
out = transform(template, {}, NoManagedPolicies())
mappings = [r["Properties"] for r in out["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
assert len(mappings) == 1, mappings
esm = mappings[0]
for prop in ["Topics", "StartingPosition", "BatchSize", "MaximumBatchingWindowInSeconds", "ProvisionedPollerConfig",
             "MaximumRetryAttempts", "BisectBatchOnFunctionError", "DestinationConfig"]:
    assert prop in esm, f"event source mapping lacks {prop}"
assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"], esm
fn = next(r["Properties"] for r in out["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
assert fn["Environment"]["Variables"]["RELAY_PARTIAL_BATCH"] == "true", "partial batch responses need RELAY_PARTIAL_BATCH"
assert fn["Architectures"] == ["arm64"] and fn["Runtime"] == "provided.al2023", fn
print("template: SAM transform ok; event source mapping has", ", ".join(sorted(esm)))

# Per Auth mode, resolve the conditions the way CloudFormation will and check the role
# gets exactly the permissions that mode needs, and the mapping the right source access.
params = {"ClusterArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/dms/uuid-1",
          "ScramSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_relay-AbC",
          "ScramSecretKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/k-1",
          "ClientCertificateSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-cert-XyZ"}
for name, p in out["Parameters"].items():
    params.setdefault(name, p.get("Default", ""))

def condition(name, values):
    return evaluate(out["Conditions"][name], values)

def evaluate(node, values):
    if isinstance(node, dict) and len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            value = values.get(arg, arg)
            return ",".join(value) if isinstance(value, list) else value
        if key == "Fn::Equals":
            return evaluate(arg[0], values) == evaluate(arg[1], values)
        if key == "Fn::Not":
            return not evaluate(arg[0], values)
        if key == "Fn::And":
            return all(evaluate(a, values) for a in arg)
        if key == "Fn::Or":
            return any(evaluate(a, values) for a in arg)
        if key == "Fn::Join":
            return arg[0].join(str(evaluate(a, values)) for a in (arg[1] if isinstance(arg[1], list) else [evaluate(arg[1], values)]))
        if key == "Condition":
            return condition(arg, values)
    return node

def resolve(node, values):
    """Resolves Fn::If and drops AWS::NoValue, leaving other intrinsics alone."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve(yes if condition(name, values) else no, values)
        if node == {"Ref": "AWS::NoValue"}:
            return None
        return {k: r for k, v in node.items() if (r := resolve(v, values)) is not None}
    if isinstance(node, list):
        return [r for v in node if (r := resolve(v, values)) is not None]
    return node

role = next(r["Properties"] for r in out["Resources"].values() if r["Type"] == "AWS::IAM::Role")
always = {"kafka:DescribeCluster", "kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers",
          "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
          "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"}
iam = {"kafka-cluster:Connect", "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData",
       "kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup", "kafka-cluster:WriteData",
       "kafka-cluster:WriteDataIdempotently"}
expected = {
    ("iam", ""): (always | iam, None),
    ("scram", ""): (always | {"secretsmanager:GetSecretValue", "kms:Decrypt"}, "SASL_SCRAM_512_AUTH"),
    ("tls", ""): (always, None),
    ("tls", "cert"): (always | {"secretsmanager:GetSecretValue"}, "CLIENT_CERTIFICATE_TLS_AUTH"),
    ("none", ""): (always, None),
}
for (mode, variant), (actions, access) in expected.items():
    values = dict(params, Auth=mode)
    if not variant:
        values["ClientCertificateSecretArn"] = ""
    policies = resolve(role["Policies"], values)
    granted = set()
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            granted |= set([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
            if "secretsmanager:GetSecretValue" in statement["Action"]:
                wanted = params["ScramSecretArn"] if mode == "scram" else params["ClientCertificateSecretArn"]
                assert evaluate(statement["Resource"], values) == wanted, (mode, statement)
    assert granted == actions, f"Auth={mode} {variant}: extra {granted - actions}, missing {actions - granted}"
    esm_values = resolve(esm, values)
    got = [c["Type"] for c in esm_values.get("SourceAccessConfigurations", [])]
    assert got == ([access] if access else []), (mode, variant, got)
    env = resolve(fn["Environment"]["Variables"], values)
    assert evaluate(env["RELAY_AUTH"], values) == mode, env
    assert ("RELAY_SCRAM_SECRET_ARN" in env) == (mode == "scram"), env
    print(f"template: Auth={mode}{' with client certificate' if variant else ''}: {len(granted)} actions, "
          f"source access {access or 'none'}")
PY
