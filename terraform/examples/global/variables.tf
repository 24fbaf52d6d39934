variable "deployment" {
  description = "Deployment name: resource names, Secrets Manager names, etcd prefix."
  type        = string
  default     = "prod"
}

variable "zone" {
  description = "The delegated zone (the parent gets NS + glue for it)."
  type        = string
  default     = "turn.example.com"
}

variable "package_url" {
  description = "Where the machines download the geosteer .deb (docs/deployment.md: build and publish)."
  type        = string
}

variable "package_sha256" {
  description = "SHA-256 of that .deb (sha256sum); cloud-init refuses anything else."
  type        = string
}

variable "relay_regions" {
  description = "geosteer relay regions: one entry each. Adding a region in an AWS region of local.aws_regions is one more entry; removing one: drain first (docs/deployment.md)."
  type = map(object({
    aws_region  = string
    latitude    = number
    longitude   = number
    description = optional(string, "")
    min_size    = optional(number, 2)
    max_size    = optional(number, 6)
  }))
  default = {
    us-east      = { aws_region = "us-east-1", latitude = 39.04, longitude = -77.49, description = "N. Virginia" }
    eu-central   = { aws_region = "eu-central-1", latitude = 50.11, longitude = 8.68, description = "Frankfurt" }
    ap-southeast = { aws_region = "ap-southeast-1", latitude = 1.29, longitude = 103.85, description = "Singapore" }
  }
  validation {
    condition     = alltrue([for r in values(var.relay_regions) : contains(["us-east-1", "eu-central-1", "ap-southeast-1"], r.aws_region)])
    error_message = "every relay_regions[].aws_region must have a provider and module block in this example (us-east-1, eu-central-1, ap-southeast-1); add them for another AWS region."
  }
}

variable "dns_nodes" {
  description = "Steering DNS nodes by NS label: at least two, each in its own AWS region (each creates that region's copy of the DNS secret)."
  type = map(object({
    aws_region = string
  }))
  default = {
    ns1 = { aws_region = "us-east-1" }
    ns2 = { aws_region = "eu-central-1" }
  }
  validation {
    condition     = alltrue([for n in values(var.dns_nodes) : contains(["us-east-1", "eu-central-1"], n.aws_region)])
    error_message = "every dns_nodes[].aws_region must have a DNS module block in main.tf (us-east-1, eu-central-1); add one for another AWS region."
  }
  validation {
    condition     = length(var.dns_nodes) >= 2 && length(distinct([for n in values(var.dns_nodes) : n.aws_region])) == length(var.dns_nodes)
    error_message = "at least two DNS nodes, each in its own AWS region: one region's outage must not take the zone down. (A second node in one AWS region reads that region's secret: give it its own module block with create_secret = false and the first node's kms_key_arn.)"
  }
}

variable "networks" {
  description = "Per AWS region in use: the VPC, public subnets (relays use all, a DNS node the first) and the Debian 12 AMI."
  type = map(object({
    vpc_id     = string
    subnet_ids = list(string)
    ami_id     = string
  }))
}

variable "relay_secrets" {
  description = "Per relay region: {turn_secrets = [newest, ...], nonce_key, tls_cert, tls_key}. Every region must list the secrets the DNS nodes sign ICE credentials with."
  type = map(object({
    turn_secrets = list(string)
    nonce_key    = string
    tls_cert     = optional(string)
    tls_key      = optional(string)
  }))
  sensitive = true
}

variable "dns_secret" {
  description = "{turn_secrets = [newest, ...], ice_api_keys = [...], api_token} for the DNS nodes' ICE and admin API."
  type = object({
    turn_secrets = list(string)
    ice_api_keys = list(string)
    api_token    = string
  })
  sensitive = true
}

variable "admin_cidrs" {
  description = "Networks allowed on the DNS nodes' admin/ICE API (your application backends)."
  type        = list(string)
  default     = []
}
