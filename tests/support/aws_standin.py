#!/usr/bin/env python3
"""Stand-ins for the two AWS endpoints geosteer's AWS helpers talk to, for
tests/run.d/55-aws-helpers.sh (no AWS is reachable from a test):

* `imds PORT_FILE INSTANCE_ID STATE_DIR`: an IMDSv2 server on 127.0.0.1
  (PUT /latest/api/token, then GET /latest/meta-data/... with the token;
  a GET without a valid token is 401, as IMDSv2 with http_tokens=required).
  Serves instance-id, placement/region, local-ipv4, public-ipv4 (the pool
  address associated with the instance, else 404) and
  autoscaling/target-lifecycle-state (STATE_DIR/lifecycle-INSTANCE, default
  InService).
* `cli ARGS...` (installed as `aws` on PATH): the AWS CLI v1/v2 calls the
  helpers make, with the CLI's argument spelling, against STATE_DIR/ec2.json
  (AWS_STANDIN_STATE), under a file lock so concurrent calls are atomic the
  way EC2's are. Unknown calls fail like the CLI (exit 252, usage on stderr).
"""
import fcntl
import http.server
import json
import os
import secrets
import sys
import time

REGION = "eu-central-1"


def state_dir():
    return os.environ["AWS_STANDIN_STATE"]


class Locked:
    """The state file, read-modify-write under an exclusive lock."""

    def __enter__(self):
        self.f = open(os.path.join(state_dir(), "ec2.json"), "r+")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        self.s = json.load(self.f)
        return self.s

    def __exit__(self, *exc):
        if exc[0] is None:
            self.f.seek(0)
            self.f.truncate()
            json.dump(self.s, self.f, indent=1)
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def opts(args):
    """--key value pairs (flags without a value map to True); repeated
    --filters / --dimensions values are collected in lists."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            fail(f"unexpected argument {a!r}")
        key = a[2:]
        vals = []
        while i + 1 < len(args) and not args[i + 1].startswith("--"):
            vals.append(args[i + 1])
            i += 1
        out[key] = vals if key in ("filters", "dimensions") else (vals[0] if vals else True)
        i += 1
    return out


def fail(msg, code=252):
    print(f"aws: error: {msg}", file=sys.stderr)
    sys.exit(code)


def cli(argv):
    if len(argv) >= 2 and argv[0] == "--region":
        argv = argv[2:]
    if len(argv) < 2:
        fail("the following arguments are required: command, operation")
    service, op, o = argv[0], argv[1], opts(argv[2:])
    with Locked() as s:
        s.setdefault("calls", []).append({"t": time.time(), "service": service, "op": op, "args": o})
        if (service, op) == ("ec2", "describe-addresses"):
            filters = dict(f.split(",", 1) for f in o.get("filters", []))
            pool = filters.get("Name=tag:geosteer:pool", "Values=").split("=", 1)[1]
            out = [a for a in s["addresses"] if a["Tags"].get("geosteer:pool") == pool]
            print(json.dumps({"Addresses": [
                {k: v for k, v in {
                    "AllocationId": a["AllocationId"], "PublicIp": a["PublicIp"], "Domain": "vpc",
                    "AssociationId": a.get("AssociationId"), "InstanceId": a.get("InstanceId"),
                    "Tags": [{"Key": k, "Value": v} for k, v in a["Tags"].items()],
                }.items() if v is not None} for a in out]}))
        elif (service, op) == ("ec2", "associate-address"):
            a = next((a for a in s["addresses"] if a["AllocationId"] == o.get("allocation-id")), None)
            if a is None:
                fail(f"An error occurred (InvalidAllocationID.NotFound) when calling the AssociateAddress operation", 254)
            if a.get("AssociationId") and o.get("no-allow-reassociation"):
                fail("An error occurred (Resource.AlreadyAssociated) when calling the AssociateAddress operation: "
                     f"resource {a['AllocationId']} is already associated with associate-id {a['AssociationId']}", 254)
            # One public address per primary private IP: a new association
            # replaces the instance's earlier one, as in a VPC.
            for b in s["addresses"]:
                if b.get("InstanceId") == o["instance-id"]:
                    b.pop("InstanceId", None)
                    b.pop("AssociationId", None)
            a["InstanceId"] = o["instance-id"]
            a["AssociationId"] = "eipassoc-" + secrets.token_hex(4)
            print(json.dumps({"AssociationId": a["AssociationId"]}))
        elif (service, op) == ("cloudwatch", "put-metric-data"):
            for k in ("namespace", "metric-name", "value"):
                if k not in o:
                    fail(f"the following arguments are required: --{k}")
            float(o["value"])
            s.setdefault("metrics", []).append(o)
        elif (service, op) == ("autoscaling", "complete-lifecycle-action"):
            for k in ("lifecycle-hook-name", "auto-scaling-group-name", "lifecycle-action-result"):
                if k not in o:
                    fail(f"the following arguments are required: --{k}")
            s.setdefault("completed", []).append(o)
        elif (service, op) == ("secretsmanager", "get-secret-value"):
            v = s.get("secrets", {}).get(o.get("secret-id"))
            if v is None:
                fail("An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: "
                     "Secrets Manager can't find the specified secret.", 254)
            if o.get("query") != "SecretString" or o.get("output") != "text":
                fail("this stand-in answers --query SecretString --output text only")
            print(v)
        else:
            fail(f"no stand-in for {service} {op}")


def imds(port_file, instance, sdir):
    tokens = set()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body=""):
            b = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_PUT(self):
            if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                return self.reply(400)
            t = secrets.token_hex(16)
            tokens.add(t)
            self.reply(200, t)

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") not in tokens:
                return self.reply(401)
            p = self.path.removeprefix("/latest/meta-data/")
            if p == "instance-id":
                return self.reply(200, instance)
            if p == "placement/region":
                return self.reply(200, REGION)
            if p == "local-ipv4":
                return self.reply(200, "10.0.1.5")
            if p == "public-ipv4":
                with open(os.path.join(sdir, "ec2.json")) as f:
                    mine = [a["PublicIp"] for a in json.load(f)["addresses"] if a.get("InstanceId") == instance]
                return self.reply(200, mine[0]) if mine else self.reply(404)
            if p == "autoscaling/target-lifecycle-state":
                try:
                    with open(os.path.join(sdir, f"lifecycle-{instance}")) as f:
                        return self.reply(200, f.read().strip())
                except FileNotFoundError:
                    return self.reply(200, "InService")
            self.reply(404)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    srv.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        cli(sys.argv[2:])
    elif sys.argv[1] == "imds":
        imds(*sys.argv[2:5])
    else:
        sys.exit("usage: aws_standin.py cli ARGS... | imds PORT_FILE INSTANCE_ID STATE_DIR")
