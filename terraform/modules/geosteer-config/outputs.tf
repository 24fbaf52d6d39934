output "geosteer_toml" {
  description = "The DNS node's geosteer.toml."
  value       = local.geosteer_toml
}

output "zone_file" {
  description = "Zone file of the delegated zone (SOA, NS, glue of the DNS nodes)."
  value       = local.zone_file
}

output "zone_file_name" {
  description = "File name geosteer.toml refers to for the zone."
  value       = "${var.zone}.zone"
}

output "relay_toml" {
  description = "Per region: the relay config without addresses and secrets, completed at boot by geosteer-relay-finish-config."
  value       = local.relay_toml
}

output "relay_firewall" {
  description = "Ports relays listen on (protocol, from, to, source = public | dns_nodes): the only source of security-group rules."
  value       = local.relay_firewall
}

output "dns_firewall" {
  description = "Ports DNS nodes listen on."
  value = [
    { name = "dns-udp", protocol = "udp", from = 53, to = 53, source = "public" },
    { name = "dns-tcp", protocol = "tcp", from = 53, to = 53, source = "public" },
    { name = "api", protocol = "tcp", from = tonumber(split(":", var.api_listen)[1]), to = tonumber(split(":", var.api_listen)[1]), source = "admin" },
  ]
}

output "units" {
  description = "systemd units (the same files the .deb ships)."
  value       = local.units
}

output "sysctl" {
  description = "sysctl.d file for relay and DNS hosts."
  value       = local.sysctl
}

output "dns_user_data" {
  description = "cloud-init user-data of a DNS node (no secrets: only the Secrets Manager name)."
  value       = local.dns_user_data
}

output "relay_user_data" {
  description = "Per region: cloud-init user-data of a relay (no secrets)."
  value       = local.relay_user_data
}

output "secret_names" {
  description = "Secrets Manager names the machines read at boot: dns, and relay per region (pass relay[region] to aws-relay-region's secret_name)."
  value       = { dns = local.dns_secret_name, relay = local.relay_secret_name }
}

output "ns_records" {
  description = "NS and glue to put in the parent zone."
  value = concat(
    [for n in var.dns_nodes : "${var.zone}. 86400 IN NS ${n.name}.${var.zone}."],
    [for n in var.dns_nodes : "${n.name}.${var.zone}. 86400 IN A ${n.address}"],
  )
}

output "anycast_toml" {
  description = "The DNS nodes' anycast agent config (/etc/geosteer/anycast.toml), or null without var.anycast."
  value       = local.anycast_toml
}

output "bird_anycast_conf" {
  description = "BIRD include with one disabled static protocol per VIP (/etc/bird/geosteer-anycast.conf), or null unless anycast.speaker = \"bird\"."
  value       = local.bird_anycast_conf
}

output "relay_group_names" {
  description = "Per region: the relays' autoscaling group name, also their Elastic IP pool tag (geosteer:pool) and the Utilization metric's dimension; aws-relay-region derives the same name (its autoscaling_group_name output)."
  value       = local.relay_group_name
}
