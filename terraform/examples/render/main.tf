# Provider-free root: renders every file of a three-region deployment with
# the geosteer-config module. tests/run.d/50-deployment.sh applies it (no
# resources, outputs only) and checks the files with geosteer check,
# geosteer-relay check and systemd-analyze verify.
terraform {
  required_version = ">= 1.6.0"
}

variable "config_dir" {
  description = "Where the rendered configs will live (a scratch directory in the test)."
  type        = string
  default     = "/etc/geosteer"
}

module "config" {
  source         = "../../modules/geosteer-config"
  deployment     = "prod"
  zone           = "turn.example.com"
  config_dir     = var.config_dir
  geoip_database = "${var.config_dir}/GeoLite2-City.mmdb"
  turns_on_443   = true
  # Every DNS node also announces an anycast VIP through its own BIRD.
  anycast = { vips = ["192.0.2.53"], med = 10, communities = ["64512:53"] }
  dns_nodes = [
    { name = "ns1", address = "203.0.113.53" },
    { name = "ns2", address = "198.51.100.53" },
  ]
  regions = [
    { name = "us-east", latitude = 39.04, longitude = -77.49, description = "Ashburn",
    members = [{ name = "use1-a", addresses = ["192.0.2.10"], health_url = "http://192.0.2.10:9641/health" }] },
    { name = "eu-central", latitude = 50.11, longitude = 8.68, description = "Frankfurt",
    members = [{ name = "euc1-a", addresses = ["192.0.2.20"], health_url = "http://192.0.2.20:9641/health", weight = 200 }] },
    { name = "ap-southeast", latitude = 1.29, longitude = 103.85, description = "Singapore",
    members = [{ name = "apse1-a", addresses = ["192.0.2.30"], health_url = "http://192.0.2.30:9641/health" }] },
  ]
}

output "files" {
  description = "Rendered files by name."
  value = merge(
    {
      "geosteer.toml"                = module.config.geosteer_toml
      (module.config.zone_file_name) = module.config.zone_file
      "60-geosteer-relay.conf"       = module.config.sysctl
      "dns-user-data.yaml"           = module.config.dns_user_data
      "anycast.toml"                 = module.config.anycast_toml
      "bird-geosteer-anycast.conf"   = module.config.bird_anycast_conf
    },
    { for k, v in module.config.relay_toml : "relay-${k}.toml.base" => v },
    { for k, v in module.config.relay_user_data : "relay-${k}-user-data.yaml" => v },
    module.config.units,
  )
}

output "relay_firewall" {
  description = "Relay security-group rules."
  value       = module.config.relay_firewall
}

output "dns_firewall" {
  description = "DNS node security-group rules."
  value       = module.config.dns_firewall
}

output "ns_records" {
  description = "NS and glue for the parent zone."
  value       = module.config.ns_records
}

output "secret_names" {
  description = "Secrets Manager names the machines read at boot (dns; relay per region)."
  value       = module.config.secret_names
}

output "relay_group_names" {
  description = "Per region: autoscaling group, EIP pool tag and metric dimension (aws-relay-region's autoscaling_group_name)."
  value       = module.config.relay_group_names
}
