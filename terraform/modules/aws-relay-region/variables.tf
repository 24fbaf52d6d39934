variable "deployment" {
  description = "Deployment name (same as the geosteer-config module's)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.deployment))
    error_message = "deployment must be 1-31 lowercase letters, digits or '-'."
  }
}

variable "region_name" {
  description = "geosteer region name, e.g. eu-central."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", var.region_name))
    error_message = "region_name must be a DNS label (letters, digits, '-'), as geosteer-config requires."
  }
}

variable "latitude" {
  description = "Latitude of the region, degrees."
  type        = number
  validation {
    condition     = var.latitude >= -90 && var.latitude <= 90
    error_message = "latitude must be within -90..90."
  }
}

variable "longitude" {
  description = "Longitude of the region, degrees."
  type        = number
  validation {
    condition     = var.longitude >= -180 && var.longitude <= 180
    error_message = "longitude must be within -180..180."
  }
}

variable "vpc_id" {
  description = "VPC of the relays."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets (one per availability zone) for the relays."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "at least one subnet."
  }
}

variable "ami_id" {
  description = "Debian 12 AMI for the relays."
  type        = string
}

variable "instance_type" {
  description = "Relay instance type (network-optimised, e.g. c7gn.large or c6in.large)."
  type        = string
  default     = "c6in.large"
}

variable "min_size" {
  description = "Fewest relays (at most max_size)."
  type        = number
  default     = 2
  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1: a region without relays is steered around, not served."
  }
}

variable "max_size" {
  description = "Most relays; as many Elastic IPs are allocated."
  type        = number
  default     = 6
  validation {
    condition     = var.max_size >= 1 && var.max_size <= 50
    error_message = "max_size must be 1..50."
  }
}

variable "target_utilization_percent" {
  description = "Target-tracking value of GeosteerRelay/Utilization (sessions / capacity, %); the brief scales out past 80."
  type        = number
  default     = 70
  validation {
    condition     = var.target_utilization_percent > 0 && var.target_utilization_percent < 100
    error_message = "target_utilization_percent must be 1..99."
  }
}

variable "relay_firewall" {
  description = "Ports from geosteer-config's relay_firewall output: the only source of ingress rules."
  type = list(object({
    name     = string
    protocol = string
    from     = number
    to       = number
    source   = string
  }))
}

variable "dns_node_cidrs" {
  description = "Addresses of the DNS nodes (/32): the only sources allowed on the health/metrics port."
  type        = list(string)
  validation {
    condition     = length(var.dns_node_cidrs) > 0 && alltrue([for c in var.dns_node_cidrs : can(cidrhost(c, 0)) && endswith(c, "/32")])
    error_message = "dns_node_cidrs must list the DNS nodes as /32 blocks (aws-dns-node's cidr output)."
  }
}

variable "ssh_cidrs" {
  description = "Networks allowed to SSH; empty (the default) = SSH closed."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "ssh_cidrs must be CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "user_data" {
  description = "cloud-init user-data from geosteer-config's relay_user_data (holds no secret)."
  type        = string
}

variable "secret_name" {
  description = "Secrets Manager name from geosteer-config's secret_names.relay[region_name]: the name this region's user-data reads at boot, used as is."
  type        = string
}

variable "relay_secret" {
  description = "JSON {turn_secrets = [...], nonce_key, tls_cert, tls_key}; stored in Secrets Manager."
  type = object({
    turn_secrets = list(string)
    nonce_key    = string
    tls_cert     = optional(string)
    tls_key      = optional(string)
  })
  sensitive = true
}

variable "kms_key_id" {
  description = "KMS key for the secret, volumes and logs; null = a key created here."
  type        = string
  default     = null
}

variable "drain_timeout" {
  description = "Seconds a terminating relay may drain (lifecycle hook heartbeat); the same as geosteer-config's drain_timeout."
  type        = number
  default     = 3600
  validation {
    condition     = var.drain_timeout >= 30 && var.drain_timeout <= 7140
    error_message = "drain_timeout must be 30..7140 s (the lifecycle hook's heartbeat is at most 7200 s)."
  }
}

variable "health_port" {
  description = "Relay health port (for the health URLs)."
  type        = number
  default     = 9641
}
