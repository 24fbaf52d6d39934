output "address" {
  description = "The node's Elastic IP: its glue address (geosteer-config's dns_nodes[].address) and the source of its health probes (aws-relay-region's dns_node_cidrs)."
  value       = aws_eip.node.public_ip
}

output "cidr" {
  description = "address as a /32, for aws-relay-region's dns_node_cidrs."
  value       = "${aws_eip.node.public_ip}/32"
}

output "instance_id" {
  description = "The node's instance."
  value       = aws_instance.node.id
}

output "security_group_id" {
  description = "The node's security group."
  value       = aws_security_group.node.id
}

output "kms_key_arn" {
  description = "The KMS key of the node's secret and volume: pass it as kms_key_id to further nodes of the same AWS region (create_secret = false)."
  value       = local.kms_key
}
