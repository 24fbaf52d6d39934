#!/usr/bin/env python3
"""Static checks of terraform/examples/global (no AWS provider can be
downloaded here, so `terraform validate` cannot run on it):

* every module call passes only variables its module declares, and every
  variable without a default;
* every AWS region the example accepts (the validations of relay_regions and
  dns_nodes) has a provider and a module block filtering on that region and
  using that provider, and nothing else does;
* the default regions and DNS nodes are accepted;
* outputs and locals name only modules that exist.
"""
import pathlib
import re
import sys

import hcl2

ex = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "terraform/examples/global")


def load(p):
    with open(p) as f:
        return hcl2.load(f)


def merged(d):
    out = {}
    for f in sorted(d.glob("*.tf")):
        for k, v in load(f).items():
            out.setdefault(k, []).extend(v)
    return out


def flat(blocks):
    return {k: v for b in blocks for k, v in b.items()}


root = merged(ex)
variables = flat(root["variable"])
modules = flat(root["module"])
problems = []

# 1. Inputs against each module's variables.
meta = {"source", "for_each", "providers", "count", "depends_on", "version", "__start_line__", "__end_line__"}
for name, m in modules.items():
    src = (ex / m["source"]).resolve() if isinstance(m["source"], str) else (ex / m["source"][0]).resolve()
    declared = flat(merged(src)["variable"])
    given = set(m) - meta
    for v in sorted(given - set(declared)):
        problems.append(f"module.{name}: {v} is not a variable of {src.name}")
    for v, spec in declared.items():
        if "default" not in spec and v not in given:
            problems.append(f"module.{name}: required variable {v} of {src.name} not set")

# 2. AWS regions: providers, module blocks, validations.
providers = {}
for p in root["provider"]:
    cfg = p["aws"]
    alias = cfg["alias"][0] if isinstance(cfg["alias"], list) else cfg["alias"]
    region = cfg["region"][0] if isinstance(cfg["region"], list) else cfg["region"]
    providers[alias] = region


def region_of(m):
    fe = m["for_each"][0] if isinstance(m["for_each"], list) else m["for_each"]
    r = re.search(r'aws_region == \\?"([a-z0-9-]+)\\?"', fe)
    prov = m["providers"][0]["aws"] if isinstance(m["providers"], list) else m["providers"]["aws"]
    alias = re.search(r"aws\.(\w+)", prov).group(1)
    return (r.group(1) if r else None), alias


def accepted(var):
    one = lambda x: x[0] if isinstance(x, list) else x
    conds = " ".join(one(v["condition"]) for v in variables[var]["validation"])
    m = re.search(r"contains\(\[([^\]]*)\]", conds)
    return set(re.findall(r"['\"]([a-z0-9-]+)['\"]", m.group(1))) if m else set()


for kind, var in [("relays_", "relay_regions"), ("dns_", "dns_nodes")]:
    blocks = {}
    for name, m in modules.items():
        if name.startswith(kind):
            region, alias = region_of(m)
            if region is None:
                problems.append(f"module.{name}: for_each does not filter on one aws_region")
                continue
            if providers.get(alias) != region:
                problems.append(f"module.{name}: filters {region} but uses provider aws.{alias} ({providers.get(alias)})")
            blocks[region] = name
    ok = accepted(var)
    if ok != set(blocks):
        problems.append(f"{var}: validation accepts {sorted(ok)}, module blocks exist for {sorted(blocks)}")
    default = variables[var].get("default", {})
    default = default[0] if isinstance(default, list) else default
    for k, v in default.items():
        if v["aws_region"] not in blocks:
            problems.append(f"{var} default {k}: {v['aws_region']} has no module block")
    print(f"  {var}: AWS regions {sorted(blocks)} each with a provider and a module block")

# 3. References to modules that do not exist.
text = "".join(f.read_text() for f in ex.glob("*.tf"))
for ref in sorted(set(re.findall(r"module\.(\w+)", text)) - set(modules)):
    problems.append(f"reference to module.{ref}, which is not declared")

if problems:
    sys.exit("examples/global:\n  " + "\n  ".join(problems))
print(f"  {len(modules)} module calls: inputs match their modules' variables")
