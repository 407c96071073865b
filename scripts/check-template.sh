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
PY
