output "parent_zone_records" {
  description = "Add these at the parent zone (example.com): the delegation (NS) and the glue (A) of every DNS node."
  value       = module.config.ns_records
}

output "dns_nodes" {
  description = "DNS node name => Elastic IP (query them directly: dig @ADDRESS turn.example.com)."
  value       = { for name, m in local.dns_modules : name => m.address }
}

output "relay_addresses" {
  description = "Relay region => its Elastic IP pool (the addresses steering hands out)."
  value       = { for name, m in local.relay_modules : name => m.addresses }
}

output "relay_groups" {
  description = "Relay region => autoscaling group (scale, instance refresh, drain)."
  value       = { for name, m in local.relay_modules : name => m.autoscaling_group_name }
}

output "admin_api" {
  description = "Admin/ICE API URL per DNS node (reachable from admin_cidrs only)."
  value       = { for name, m in local.dns_modules : name => "http://${m.address}:${one([for r in module.config.dns_firewall : r.from if r.source == "admin"])}" }
}
