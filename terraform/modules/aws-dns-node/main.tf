# One steering DNS node: a fixed instance with an Elastic IP, not an
# autoscaling group. The address is the zone's glue at the parent, so it must
# be known at plan time and never change; a node is replaced in place (EC2
# automatic recovery keeps instance, private IP and Elastic IP on a host
# failure), and the zone's other NS answer meanwhile (RFC 1034: at least two,
# in different regions). An ASG with an address pool would only add a claim
# step for a tier that does not scale with load.
locals {
  name = "geosteer-${var.deployment}-${var.node_name}"
  tags = { "geosteer:deployment" = var.deployment, "geosteer:dns-node" = var.node_name }
  rules = {
    for r in var.dns_firewall : r.name => r
  }
  public_rules = { for k, r in local.rules : k => r if r.source == "public" }
  admin_rules = merge([
    for k, r in local.rules : { for c in var.admin_cidrs : "${k}-${c}" => merge(r, { cidr = c }) } if r.source == "admin"
  ]...)
  kms_key = var.kms_key_id != null ? var.kms_key_id : aws_kms_key.this[0].arn
  # Secrets Manager appends six random characters to a secret's ARN.
  secret_arn = "arn:aws:secretsmanager:${data.aws_region.this.name}:${data.aws_caller_identity.this.account_id}:secret:${var.secret_name}-??????"
}

data "aws_caller_identity" "this" {}
data "aws_region" "this" {}

resource "aws_kms_key" "this" {
  count                   = var.kms_key_id == null ? 1 : 0
  description             = "${local.name} secret and volume"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdmin"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.this.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.tags
  lifecycle {
    precondition {
      condition     = var.create_secret || var.kms_key_id != null
      error_message = "${var.node_name}: with create_secret = false pass kms_key_id, the key the region's DNS secret is encrypted with."
    }
  }
}

resource "aws_secretsmanager_secret" "dns" {
  count = var.create_secret ? 1 : 0
  # Exactly the name the DNS user-data makes geosteer-fetch-secrets read.
  name       = var.secret_name
  kms_key_id = local.kms_key
  tags       = local.tags
  # checkov:skip=CKV2_AWS_57: TURN REST secrets rotate by adding a new one first and the API token by replacement (docs/deployment.md), not by a Lambda.
}

resource "aws_secretsmanager_secret_version" "dns" {
  count         = var.create_secret ? 1 : 0
  secret_id     = aws_secretsmanager_secret.dns[0].id
  secret_string = jsonencode(var.dns_secret)
  lifecycle {
    precondition {
      condition     = var.dns_secret != null
      error_message = "${var.node_name}: create_secret = true needs dns_secret."
    }
  }
}

resource "aws_security_group" "node" {
  name        = local.name
  description = "geosteer DNS node: DNS public, admin API only from admin_cidrs"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "public" {
  for_each          = local.public_rules
  security_group_id = aws_security_group.node.id
  description       = "geosteer ${each.key} (dns_firewall)"
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each          = local.admin_rules
  security_group_id = aws_security_group.node.id
  description       = "geosteer admin/ICE API from ${each.value.cidr} (dns_firewall)"
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.ssh_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "SSH, off unless ssh_cidrs is set"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.node.id
  description       = "relay health probes, etcd, Secrets Manager, package download, BGP sessions the anycast speaker opens"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_iam_role" "node" {
  name = local.name
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ec2.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "node" {
  name = "own-secret"
  role = aws_iam_role.node.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Sid = "OwnSecret", Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = local.secret_arn },
      { Sid = "Decrypt", Effect = "Allow", Action = "kms:Decrypt", Resource = local.kms_key },
    ]
  })
}

resource "aws_iam_instance_profile" "node" {
  name = local.name
  role = aws_iam_role.node.name
}

resource "aws_instance" "node" {
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.node.id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  user_data_base64       = base64encode(var.user_data)
  # New user-data (a new package or config) replaces the node: one at a
  # time, so the zone's other NS keep answering (docs/deployment.md).
  user_data_replace_on_change = true
  ebs_optimized               = true
  monitoring                  = true
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }
  maintenance_options {
    auto_recovery = "default"
  }
  root_block_device {
    volume_size = 16
    volume_type = "gp3"
    encrypted   = true
    kms_key_id  = local.kms_key
  }
  tags       = merge(local.tags, { Name = local.name })
  depends_on = [aws_secretsmanager_secret_version.dns]
}

resource "aws_eip" "node" {
  domain = "vpc"
  tags   = merge(local.tags, { Name = local.name })
}

resource "aws_eip_association" "node" {
  allocation_id = aws_eip.node.id
  instance_id   = aws_instance.node.id
}
