# Relays of one region: an autoscaling group with a launch template (not a
# count of instances) so the group can scale on utilization and replace
# failed instances; Elastic IPs are a fixed pool of max_size addresses that
# instances claim at boot, so addresses and health URLs are known at plan time.
locals {
  # The group's name is also its Elastic IP pool tag and the Utilization
  # metric's dimension. geosteer-config's relay_group_names gives the
  # region's user-data the same name by the same rule (checked by
  # tests/run.d/50-deployment.sh); taking it as an input instead would make a
  # cycle, since geosteer-config's regions come from this module's addresses.
  name = "geosteer-${var.deployment}-${var.region_name}"
  tags = { "geosteer:deployment" = var.deployment, "geosteer:region" = var.region_name }
  rules = {
    for r in var.relay_firewall : r.name => r
  }
  public_rules = { for k, r in local.rules : k => r if r.source == "public" }
  dns_rules = merge([
    for k, r in local.rules : { for c in var.dns_node_cidrs : "${k}-${c}" => merge(r, { cidr = c }) } if r.source == "dns_nodes"
  ]...)
  kms_key = var.kms_key_id != null ? var.kms_key_id : aws_kms_key.this[0].arn
}

data "aws_caller_identity" "this" {}
data "aws_region" "this" {}

resource "aws_kms_key" "this" {
  count                   = var.kms_key_id == null ? 1 : 0
  description             = "${local.name} secrets and volumes"
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
}

resource "aws_secretsmanager_secret" "relay" {
  # Exactly the name this region's user-data makes geosteer-fetch-secrets read.
  name       = var.secret_name
  kms_key_id = local.kms_key
  tags       = local.tags
  # checkov:skip=CKV2_AWS_57: TURN REST secrets rotate by adding a new one first (docs/deployment.md), not by a Lambda.
}

resource "aws_secretsmanager_secret_version" "relay" {
  secret_id     = aws_secretsmanager_secret.relay.id
  secret_string = jsonencode(var.relay_secret)
}

resource "aws_eip" "relay" {
  count  = var.max_size
  domain = "vpc"
  tags   = merge(local.tags, { Name = "${local.name}-${count.index}", "geosteer:pool" = local.name })
  # checkov:skip=CKV2_AWS_19: a pool of max_size addresses claimed at boot by the group's instances (ec2:AssociateAddress), not attached by Terraform.
}

resource "aws_security_group" "relay" {
  name        = local.name
  description = "geosteer relays: TURN ports public, health only from DNS nodes"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "public" {
  for_each          = local.public_rules
  security_group_id = aws_security_group.relay.id
  description       = "geosteer ${each.key} (relay_firewall)"
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "dns_nodes" {
  for_each          = local.dns_rules
  security_group_id = aws_security_group.relay.id
  description       = "geosteer health/metrics from DNS node ${each.value.cidr} (relay_firewall)"
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.ssh_cidrs)
  security_group_id = aws_security_group.relay.id
  description       = "SSH, off unless ssh_cidrs is set"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.relay.id
  description       = "relayed traffic to any peer, Secrets Manager, package download"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_iam_role" "relay" {
  name = local.name
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ec2.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "relay" {
  name = "own-secret-eip-metric"
  role = aws_iam_role.relay.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Sid = "OwnSecret", Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = aws_secretsmanager_secret.relay.arn },
      { Sid = "Decrypt", Effect = "Allow", Action = "kms:Decrypt", Resource = local.kms_key },
      { Sid = "ClaimEip", Effect = "Allow", Action = "ec2:AssociateAddress",
        Resource = concat([for e in aws_eip.relay : "arn:aws:ec2:${data.aws_region.this.name}:${data.aws_caller_identity.this.account_id}:elastic-ip/${e.allocation_id}"],
      ["arn:aws:ec2:${data.aws_region.this.name}:${data.aws_caller_identity.this.account_id}:instance/*"]) },
      # Finding a free address of the pool (describe calls take no resource).
      { Sid = "FindEip", Effect = "Allow", Action = "ec2:DescribeAddresses", Resource = "*" },
      { Sid = "Utilization", Effect = "Allow", Action = "cloudwatch:PutMetricData", Resource = "*",
      Condition = { StringEquals = { "cloudwatch:namespace" = "GeosteerRelay" } } },
      # geosteer-aws-lifecycle completes the drain hook of its own group only.
      { Sid = "CompleteDrain", Effect = "Allow", Action = "autoscaling:CompleteLifecycleAction",
      Resource = "arn:aws:autoscaling:${data.aws_region.this.name}:${data.aws_caller_identity.this.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.name}" },
    ]
  })
}

resource "aws_iam_instance_profile" "relay" {
  name = local.name
  role = aws_iam_role.relay.name
}

resource "aws_launch_template" "relay" {
  name_prefix   = "${local.name}-"
  image_id      = var.ami_id
  instance_type = var.instance_type
  user_data     = base64encode(var.user_data)
  iam_instance_profile { arn = aws_iam_instance_profile.relay.arn }
  vpc_security_group_ids = [aws_security_group.relay.id]
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 16
      volume_type = "gp3"
      encrypted   = true
      kms_key_id  = local.kms_key
    }
  }
  monitoring { enabled = true }
  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = local.name })
  }
}

resource "aws_autoscaling_group" "relay" {
  name = local.name
  lifecycle {
    precondition {
      condition     = var.min_size <= var.max_size
      error_message = "${var.region_name}: min_size (${var.min_size}) must not exceed max_size (${var.max_size})."
    }
  }
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = var.subnet_ids
  health_check_type   = "EC2"
  launch_template {
    id      = aws_launch_template.relay.id
    version = aws_launch_template.relay.latest_version
  }
  # A terminating relay waits in Terminating:Wait while geosteer-aws-lifecycle
  # drains it (systemctl stop: the relay's SIGTERM drain, up to drain_timeout)
  # and then completes this hook; the heartbeat timeout is the bound if the
  # helper is gone. The hook's name is the helper's default (GEOSTEER_HOOK).
  initial_lifecycle_hook {
    name                 = "drain"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = min(var.drain_timeout + 60, 7200)
    default_result       = "CONTINUE"
  }
  dynamic "tag" {
    for_each = local.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

# Scale on GeosteerRelay/Utilization (turn_sessions_active / turn_sessions_capacity, %),
# published by each relay (docs/deployment.md, "Autoscaling").
resource "aws_autoscaling_policy" "utilization" {
  name                   = "${local.name}-utilization"
  autoscaling_group_name = aws_autoscaling_group.relay.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    target_value = var.target_utilization_percent
    customized_metric_specification {
      metric_name = "Utilization"
      namespace   = "GeosteerRelay"
      statistic   = "Average"
      unit        = "Percent"
      metric_dimension {
        name  = "AutoScalingGroupName"
        value = local.name
      }
    }
  }
}
