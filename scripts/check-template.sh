#!/usr/bin/env bash
# Checks template.yaml offline: sam validate --lint, cfn-lint, and a full SAM transform
# (which catches what validate does not, e.g. an intrinsic where SAM expects a map) with
# the event source mapping's properties asserted, each Auth mode's exact permissions, and
# for Auth=iam where they apply: WriteDataIdempotently on the cluster, writes on the
# downstream topics only (never the source topic), and a DownstreamTopics default equal to
# the topics routes.toml writes. Then the container deployment of `serve`: ecs.yaml through
# cfn-lint, and the promises it and the Dockerfile make checked against each other and the
# code (a stop timeout longer than the shutdown timeout, non-root, the health check in
# exec form, at most one task per source partition, only variables the relay reads), and
# that Cargo.toml's release profile names panic = "unwind" (cargo lambda, which builds the
# function, would otherwise build it aborting on a panic).
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
        if key == "Fn::Select":
            return evaluate(arg[1], values)[int(arg[0])]
        if key == "Fn::Split":
            return str(evaluate(arg[1], values)).split(arg[0])
        if key == "Fn::Contains":
            return evaluate(arg[1], values) in str(evaluate(arg[0], values)).split(",")
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
          "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
          "secretsmanager:GetSecretValue"}
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
            if statement.get("Sid") == "HashKeySecret":
                # The stack's own secret unless HashKeySecretArn names one (checked below).
                assert evaluate(statement["Resource"], values) == "HashKeySecret", (mode, statement)
            elif "secretsmanager:GetSecretValue" in statement["Action"]:
                wanted = params["ScramSecretArn"] if mode == "scram" else params["ClientCertificateSecretArn"]
                assert evaluate(statement["Resource"], values) == wanted, (mode, statement)
    assert granted == actions, f"Auth={mode} {variant}: extra {granted - actions}, missing {actions - granted}"
    esm_values = resolve(esm, values)
    got = [c["Type"] for c in esm_values.get("SourceAccessConfigurations", [])]
    assert got == ([access] if access else []), (mode, variant, got)
    env = resolve(fn["Environment"]["Variables"], values)
    assert evaluate(env["RELAY_AUTH"], values) == mode, env
    assert ("RELAY_SCRAM_SECRET_ARN" in env) == (mode == "scram"), env
    # The relay writes with the client certificate the mapping reads with.
    with_certificate = mode == "tls" and bool(variant)
    assert ("RELAY_TLS_CLIENT_CERT_SECRET_ARN" in env) == with_certificate, env
    if with_certificate:
        assert evaluate(env["RELAY_TLS_CLIENT_CERT_SECRET_ARN"], values) == params["ClientCertificateSecretArn"], env
    assert evaluate(env["RELAY_HASH_KEY_SECRET_ARN"], values) == "HashKeySecret", env
    print(f"template: Auth={mode}{' with client certificate' if variant else ''}: {len(granted)} actions, "
          f"source access {access or 'none'}")

# The hash key: the stack's secret by default; a given HashKeySecretArn replaces it, in the
# environment and in the one grant, and the stack then creates no secret.
given = dict(params, HashKeySecretArn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-hash-AbC")
env = resolve(fn["Environment"]["Variables"], given)
assert evaluate(env["RELAY_HASH_KEY_SECRET_ARN"], given) == given["HashKeySecretArn"], env
grants = [st for policy in resolve(role["Policies"], given) for st in policy["PolicyDocument"]["Statement"]
          if st.get("Sid") == "HashKeySecret"]
assert [evaluate(st["Resource"], given) for st in grants] == [given["HashKeySecretArn"]], grants
assert not condition("CreateHashKey", given) and condition("CreateHashKey", params)
print("template: the hash key is the stack's secret, or HashKeySecretArn when given")

# Auth=iam, resource by resource. `value` resolves the intrinsics the grants use to
# concrete strings and lists, with the test parameters above.
import re
import tomllib

pseudo = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "AWS::StackName": "relay-stack"}

def value(node, values):
    if isinstance(node, list):
        return [value(v, values) for v in node]
    if not (isinstance(node, dict) and len(node) == 1):
        return node
    (key, arg), = node.items()
    if key == "Ref":
        if arg in pseudo:
            return pseudo[arg]
        if arg in out["Resources"]:
            return f"<{arg}>"  # a resource of the stack (the hash key secret)
        v = values[arg]
        if out["Parameters"].get(arg, {}).get("Type") == "CommaDelimitedList" and isinstance(v, str):
            return v.split(",")
        return v
    if key == "Fn::Sub":
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], {k: value(v, values) for k, v in arg[1].items()})
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m[1]] if m[1] in names else value({"Ref": m[1]}, values), text)
    if key == "Fn::Join":
        return arg[0].join(value(arg[1], values))
    if key == "Fn::Split":
        return value(arg[1], values).split(arg[0])
    if key == "Fn::Select":
        return value(arg[1], values)[int(arg[0])]
    raise AssertionError(f"no evaluation for {key}")

def resources(statement, values):
    r = value(statement["Resource"], values)
    return r if isinstance(r, list) else [r]

def matches(pattern, arn):
    """IAM resource matching: * is any run of characters, ? is one."""
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), arn) is not None

def topic_arn(topic):
    return f"arn:aws:kafka:eu-west-1:123456789012:topic/dms/uuid-1/{topic}"

def grants(values, effect="Allow"):
    """(action, resource) pairs the role is given (or, with effect="Deny", refused)
    with these parameters."""
    pairs = []
    for policy in resolve(role["Policies"], values):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] in ("Allow", "Deny"), statement
            if statement["Effect"] != effect:
                continue
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            pairs += [(a, r) for a in actions for r in resources(statement, values)]
    return pairs

def writes(topic, values):
    """Whether the role may write `topic` of the source cluster: an Allow names it and
    no Deny does."""
    named = lambda effect: any(a == "kafka-cluster:WriteData" and matches(r, topic_arn(topic))
                               for a, r in grants(values, effect))
    return named("Allow") and not named("Deny")

iam_values = dict(params, Auth="iam")
pairs = grants(iam_values)
def on(action):
    return [r for a, r in pairs if a == action]

# MSK checks WriteDataIdempotently against the cluster ARN (producer ids are a cluster
# resource); granted on topics only, an idempotent producer is refused at connect.
assert on("kafka-cluster:WriteDataIdempotently") == [params["ClusterArn"]], \
    f"WriteDataIdempotently must be granted on the cluster ARN only, got {on('kafka-cluster:WriteDataIdempotently')}"
assert on("kafka-cluster:Connect") == [params["ClusterArn"]], on("kafka-cluster:Connect")

# The source topic is read, never written.
source = topic_arn(iam_values["SourceTopic"])
assert on("kafka-cluster:ReadData") == [source], on("kafka-cluster:ReadData")
for action in ["kafka-cluster:WriteData", "kafka-cluster:WriteDataIdempotently"]:
    hit = [r for r in on(action) if matches(r, source)]
    assert not hit, f"{action} is granted on the source topic {iam_values['SourceTopic']!r} through {hit}"

# The write grant is exactly DownstreamTopics, one topic ARN each.
downstream = value({"Ref": "DownstreamTopics"}, iam_values)
written = on("kafka-cluster:WriteData")
assert sorted(written) == sorted(f"arn:*:kafka:*:*:topic/*/*/{t}" for t in downstream), written
assert sorted(on("kafka-cluster:DescribeTopic")) == sorted(written + [source]), on("kafka-cluster:DescribeTopic")
# The wildcards in those ARNs stay on this cluster only because Connect does.
assert matches(written[0], topic_arn(downstream[0]))

# The default is what the repository's routes.toml writes: every route topic, the default
# topic when unrouted tables go there, schema_changes_topic and dlq_topic, with the
# {schema}/{table} placeholders as the IAM wildcard *.
routes = tomllib.load(open("routes.toml", "rb"))
defaults = routes.get("defaults", {})
topics = []
if defaults.get("unrouted", "default") == "default":
    topics.append(defaults.get("topic", "cdc.{schema}.{table}"))
for route in routes.get("route", []):
    topics += route.get("topics", [route["topic"]] if "topic" in route else [])
topics += [defaults[k] for k in ["schema_changes_topic", "dlq_topic"] if k in defaults]
expected = {re.sub(r"\{(schema|table)\}", "*", t) for t in topics}
default = out["Parameters"]["DownstreamTopics"]["Default"].split(",")
assert len(default) == len(set(default)), f"DownstreamTopics default repeats a topic: {default}"
assert set(default) == expected, \
    f"DownstreamTopics default differs from routes.toml: missing {sorted(expected - set(default))}, extra {sorted(set(default) - expected)}"
assert not any(matches(t, iam_values["SourceTopic"]) for t in default), (default, iam_values["SourceTopic"])

# The template's rule refuses a list that names the source topic, or is *.
def rule_holds(values):
    def check(node):
        (key, arg), = node.items()
        if key == "Fn::Not":
            return not check(arg[0])
        if key == "Fn::Contains":
            return value(arg[1], values) in value(arg[0], values)
        raise AssertionError(f"no evaluation for {key} in a rule")
    return all(check(a["Assert"]) for a in out["Rules"]["DownstreamTopicsNeverSource"]["Assertions"])
assert rule_holds(iam_values)
assert not rule_holds(dict(iam_values, DownstreamTopics="orders.changes,dms.cdc"))
assert not rule_holds(dict(iam_values, DownstreamTopics="*"))
# A pattern the rule cannot see through still never writes the source topic: the Deny.
assert writes("orders.changes", iam_values) and not writes(iam_values["SourceTopic"], iam_values)
for pattern in ["dms.*", "*.cdc", "orders.changes,d?s.cdc"]:
    values = dict(iam_values, DownstreamTopics=pattern)
    assert rule_holds(values), pattern
    assert not writes(iam_values["SourceTopic"], values), f"{pattern} writes the source topic"
assert writes("dms.other", dict(iam_values, DownstreamTopics="dms.*"))
assert grants(iam_values, "Deny") == [("kafka-cluster:WriteData", f"arn:*:kafka:*:*:topic/*/*/{iam_values['SourceTopic']}")]
print(f"template: Auth=iam: WriteDataIdempotently on the cluster; WriteData on {len(written)} topics "
      f"({', '.join(default)}), none of them the source topic {iam_values['SourceTopic']}, which a Deny keeps from any pattern; the same topics as routes.toml")

def rule_passes(rules, name, values):
    """A rule as CloudFormation checks it: its assertions hold, or its condition does not."""
    rule = rules[name]
    if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
        return True
    return all(evaluate(a["Assert"], values) for a in rule["Assertions"])

# A downstream cluster of its own (Auth=iam): Connect and WriteDataIdempotently there too,
# and the rule asks for its ARN whenever DownstreamBrokers is set.
other = "arn:aws:kafka:eu-west-1:123456789012:cluster/downstream/uuid-2"
two = dict(iam_values, DownstreamBrokers="b-1.downstream:9098", DownstreamClusterArn=other)
pairs = grants(two)
for action in ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]:
    assert sorted(r for a, r in pairs if a == action) == sorted([params["ClusterArn"], other]), (action, pairs)
assert rule_passes(out["Rules"], "DownstreamClusterForIam", two)
assert not rule_passes(out["Rules"], "DownstreamClusterForIam", dict(two, DownstreamClusterArn=""))
assert rule_passes(out["Rules"], "DownstreamClusterForIam", dict(two, Auth="scram", DownstreamClusterArn=""))
print("template: a downstream cluster of its own gets Connect and WriteDataIdempotently (Auth=iam needs its ARN)")

# The consumer group: the mapping's group is named, and the group grant is that group only.
pairs = grants(iam_values)
group_arn = "arn:aws:kafka:eu-west-1:123456789012:group/dms/uuid-1/"
for group, given in [("relay-stack", ""), ("orders-relay", "orders-relay")]:
    values = dict(iam_values, ConsumerGroupId=given)
    for action in ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]:
        assert [r for a, r in grants(values) if a == action] == [group_arn + group], (action, grants(values))
    mapped = resolve(esm, values)["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
    assert value(mapped, values) == group, mapped
print("template: the consumer group is named (the stack name by default), and granted alone")

# The on-failure destination: exactly the permission its kind needs, on it.
destinations = {
    "arn:aws:sqs:eu-west-1:123456789012:relay-failures": {("sqs:SendMessage", "arn:aws:sqs:eu-west-1:123456789012:relay-failures")},
    "arn:aws:sns:eu-west-1:123456789012:relay-failures": {("sns:Publish", "arn:aws:sns:eu-west-1:123456789012:relay-failures")},
    "arn:aws:s3:::relay-failures": {("s3:ListBucket", "arn:aws:s3:::relay-failures"), ("s3:PutObject", "arn:aws:s3:::relay-failures/*")},
    "kafka://relay.failures": {("kafka-cluster:Connect", params["ClusterArn"]),
                               ("kafka-cluster:DescribeTopic", topic_arn("relay.failures")),
                               ("kafka-cluster:WriteData", topic_arn("relay.failures"))},
}
for mode in ["iam", "none"]:
    base = set(grants(dict(params, Auth=mode)))
    for destination, wanted in destinations.items():
        got = set(grants(dict(params, Auth=mode, OnFailureDestinationArn=destination)))
        assert got - base == wanted - base, (mode, destination, got - base, wanted)
print(f"template: on-failure destinations ({len(destinations)} kinds) get exactly the permission they need")
PY

cfn-lint ecs.yaml
python3 - <<'PY'
import re
from samcli.yamlhelper import yaml_parse

ecs = yaml_parse(open("ecs.yaml").read())
resources = ecs["Resources"]
container, = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
env = {e["Name"]: e["Value"] for e in container["Environment"]}
shutdown_ms = int(env["RELAY_SHUTDOWN_TIMEOUT_MS"])
serve_rs = open("src/modes/serve.rs").read()
epilogue = int(re.search(r"pub const SHUTDOWN_EPILOGUE: Duration = Duration::from_secs\((\d+)\);", serve_rs)[1])
last_resort = int(re.search(r"const LAST_RESORT: Duration = Duration::from_secs\((\d+)\);", open("src/cli.rs").read())[1])
# serve ends within the shutdown timeout, its epilogue and the last resort (src/cli.rs).
assert container["StopTimeout"] * 1000 >= shutdown_ms + (epilogue + last_resort) * 1000, \
    "SIGKILL would come before serve finishes: shutdown timeout, then aborting, leaving the group and flushing, then the last-resort second"
# One transactional id shared by the tasks would have them fence each other: each task
# makes its own (the group id and a random suffix) unless told otherwise.
assert "RELAY_TRANSACTIONAL_ID" not in env, "RELAY_TRANSACTIONAL_ID would be shared by every task of the service"
assert container["User"] == "65532" and container["ReadonlyRootFilesystem"] is True, container
assert container["HealthCheck"]["Command"] == ["CMD", "/cdc-relay", "health"], container["HealthCheck"]
assert resources["ScalableTarget"]["Properties"]["MaxCapacity"] == {"Ref": "SourcePartitions"}
assert resources["TaskDefinition"]["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
import glob
code = "".join(open(f).read() for f in sorted(glob.glob("src/config/*.rs")) + ["src/main.rs", "src/cli.rs"])
unknown = sorted(n for n in env if n.startswith("RELAY_") and f'"{n}"' not in code)
assert not unknown, f"ecs.yaml sets variables the relay does not read: {unknown}"
docker = open("Dockerfile").read()
assert re.search(r"^USER nonroot$", docker, re.M) and "distroless" in docker, "the image must run as non-root, shell-less"
assert 'HEALTHCHECK' in docker and '["/cdc-relay", "health"]' in docker
assert 'ENTRYPOINT ["/cdc-relay", "serve"]' in docker
assert "--locked" in docker
cargo_toml = open("Cargo.toml").read()
# The template's function is built by cargo lambda (rust-cargolambda), which builds with
# panic = "abort" unless the release profile names a strategy (why that matters: the
# comment on the line in Cargo.toml).
import tomllib
assert tomllib.loads(cargo_toml)["profile"]["release"].get("panic") == "unwind", \
    "Cargo.toml's release profile must name panic = \"unwind\": cargo lambda would build the function with abort"
# An aarch64 build compiles librdkafka with CMake (Cargo.toml): the image's build stage
# installs it for that architecture (docs/deploy.md builds linux/arm64).
aarch64_section = next(s for s in cargo_toml.split("\n[") if s.startswith("target.'cfg(target_arch = \"aarch64\")'.dependencies]"))
if "cmake-build" in aarch64_section:
    assert re.search(r"aarch64.*\n.*install[^\n]*cmake", docker), "the arm64 image build needs cmake"
def evaluate(node, values):
    if isinstance(node, dict) and len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            return values.get(arg, ecs["Parameters"].get(arg, {}).get("Default", ""))
        if key == "Fn::Equals":
            return evaluate(arg[0], values) == evaluate(arg[1], values)
        if key == "Fn::Not":
            return not evaluate(arg[0], values)
        if key == "Fn::And":
            return all(evaluate(a, values) for a in arg)
        if key == "Fn::Contains":
            return evaluate(arg[1], values) in str(evaluate(arg[0], values)).split(",")
    return node

def rule_passes(name, values):
    rule = ecs["Rules"][name]
    if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
        return True
    return all(evaluate(a["Assert"], values) for a in rule["Assertions"])

# Exactly once on one cluster only: transactions cannot span clusters.
assert rule_passes("ExactlyOnceOnOneCluster", {"ExactlyOnce": "true"})
assert rule_passes("ExactlyOnceOnOneCluster", {"ExactlyOnce": "false", "DownstreamBrokers": "b-1.other:9098"})
assert not rule_passes("ExactlyOnceOnOneCluster", {"ExactlyOnce": "true", "DownstreamBrokers": "b-1.other:9098"})
# Auth=iam with a downstream cluster: its ARN is required, and Connect and
# WriteDataIdempotently name it.
two = {"Auth": "iam", "DownstreamBrokers": "b-1.other:9098"}
assert not rule_passes("DownstreamClusterForIam", two)
assert rule_passes("DownstreamClusterForIam", dict(two, DownstreamClusterArn="arn:aws:kafka:eu-west-1:123456789012:cluster/o/u"))
iam_policy = next(p for p in resources["TaskRole"]["Properties"]["Policies"] if "Fn::If" in p and p["Fn::If"][0] == "IsIam")
statements = {st["Sid"]: st for st in iam_policy["Fn::If"][1]["PolicyDocument"]["Statement"]}
for sid in ["KafkaConnect", "IdempotentProducer"]:
    assert statements[sid]["Resource"] == [{"Ref": "ClusterArn"}, {"Fn::If": ["HasDownstreamCluster", {"Ref": "DownstreamClusterArn"}, {"Ref": "AWS::NoValue"}]}], statements[sid]
assert ecs["Conditions"]["HasDownstreamCluster"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DownstreamClusterArn"}, ""]}]}
print("ecs: exactly once refused across two clusters; a downstream cluster of its own gets Connect and WriteDataIdempotently")

# Auth=scram: the secret and the KMS key that encrypts it (MSK requires a customer managed
# key), through Secrets Manager only; both parameters required.
scram_policy = next(p for p in resources["TaskRole"]["Properties"]["Policies"] if "Fn::If" in p and p["Fn::If"][0] == "IsScram")
scram = {st["Sid"]: st for st in scram_policy["Fn::If"][1]["PolicyDocument"]["Statement"]}
assert scram["ScramSecret"]["Action"] == "secretsmanager:GetSecretValue" and scram["ScramSecret"]["Resource"] == {"Ref": "ScramSecretArn"}, scram
assert scram["ScramSecretKey"]["Action"] == "kms:Decrypt" and scram["ScramSecretKey"]["Resource"] == {"Ref": "ScramSecretKmsKeyArn"}, scram
assert "kms:ViaService" in scram["ScramSecretKey"]["Condition"]["StringEquals"], scram
secret = {"ScramSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_relay-AbC"}
assert not rule_passes("ScramNeedsSecret", dict(secret, Auth="scram"))
assert rule_passes("ScramNeedsSecret", dict(secret, Auth="scram", ScramSecretKmsKeyArn="arn:aws:kms:eu-west-1:123456789012:key/k-1"))
print("ecs: Auth=scram reads its secret and decrypts it with the key named (through Secrets Manager only)")

# Auth=tls with a client certificate: the task reads its secret and is told where it is.
certificate = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-client-cert-AbC"
cert_policy = next(p for p in resources["TaskRole"]["Properties"]["Policies"] if "Fn::If" in p and p["Fn::If"][0] == "IsTlsClientCertificate")
cert_statement, = cert_policy["Fn::If"][1]["PolicyDocument"]["Statement"]
assert cert_statement["Action"] == "secretsmanager:GetSecretValue" and cert_statement["Resource"] == {"Ref": "ClientCertificateSecretArn"}
cert_env = container["Environment"]
cert_value, = [e["Value"] for e in cert_env if e["Name"] == "RELAY_TLS_CLIENT_CERT_SECRET_ARN"]
def condition(name, values):
    return evaluate(ecs["Conditions"][name], values)
for auth, given, wanted in [("tls", certificate, certificate), ("tls", "", ""), ("iam", certificate, "")]:
    values = {"Auth": auth, "ClientCertificateSecretArn": given}
    cond, yes, no = cert_value["Fn::If"]
    assert (evaluate(yes, values) if condition(cond, values) else no) == wanted, (auth, given)
print("ecs: Auth=tls with a client certificate: the task reads its secret (RELAY_TLS_CLIENT_CERT_SECRET_ARN)")

# DownstreamTopics against the source topics: the task may write a topic only when an
# Allow names it and no Deny does; the source topics are denied whatever DownstreamTopics
# matches (ecs.yaml has a list of source topics, which a rule cannot compare item by item).
def arns(node, values):
    if isinstance(node, list):
        return [a for n in node for a in arns(n, values)]
    (key, arg), = node.items()
    if key == "Fn::Split":
        return arns(arg[1], values)[0].split(arg[0])
    if key == "Fn::Sub":
        text, names = arg
        subs = {k: arns(v, values)[0] for k, v in names.items()}
        return [re.sub(r"\$\{([^}]+)\}", lambda m: subs[m[1]], text)]
    if key == "Fn::Join":
        return [arg[0].join(evaluate(arg[1], values).split(","))]
    raise AssertionError(f"no evaluation for {key}")
def iam_matches(pattern, arn):
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), arn) is not None
def may_write(topic, values):
    arn = f"arn:aws:kafka:eu-west-1:123456789012:topic/dms/uuid-1/{topic}"
    def named(effect):
        return any(iam_matches(r, arn) for st in statements.values() if st["Effect"] == effect
                   and "kafka-cluster:WriteData" in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
                   for r in arns(st["Resource"], values))
    return named("Allow") and not named("Deny")
sources = {"SourceTopics": "dms.cdc,dms.orders"}
assert may_write("orders.changes", sources) and may_write("cdc.public.orders", sources)
for downstream in ["orders.changes,dms.cdc", "dms.*", "*.orders,orders.changes"]:
    values = dict(sources, DownstreamTopics=downstream)
    assert not may_write("dms.cdc", values) and not may_write("dms.orders", values), downstream
assert may_write("dms.other", dict(sources, DownstreamTopics="dms.*"))
assert not rule_passes("SourceTopicsNeverDownstream", {"DownstreamTopics": "orders.changes,*"})
assert rule_passes("SourceTopicsNeverDownstream", {})
print("ecs: the source topics are never written, whatever DownstreamTopics matches (an explicit Deny)")

print(f"ecs: cfn-lint ok; stop timeout {container['StopTimeout']} s > shutdown {shutdown_ms} ms; non-root, "
      f"read-only root, exec health check; at most SourcePartitions tasks; {len(env)} variables the relay reads")
PY
